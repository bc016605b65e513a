//! The dashboard in a real browser: a dev node trades, and headless
//! Chromium (Debian's `chromium` package, installed here when missing and
//! this runs as root, as `.ci/run` does) loads each view, runs its script,
//! and the DOM it ends with is checked against the node's JSON API;
//! screenshots at a phone's width are decoded and must not be blank. An
//! unknown account or interval is a page with a 404 status; what a URL
//! carries is escaped; every page forbids framing and foreign scripts.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Method, exact, start, stop, wait_for};
use gridshare_api::decimal::{format_money, format_price};
use gridshare_api::{Bills, Interval, Status};
use gridshare_ledger::genesis::grid_only_nano;

/// A phone's viewport.
const PHONE: (u32, u32) = (390, 844);

/// Debian's Chromium, installed if it is missing and this may install it.
fn chromium() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|dir| Path::new(dir).join(name))
                .find(|path| path.is_file())
        })
    };
    if let Some(found) = find() {
        return found;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if root {
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(status.is_ok_and(|status| status.success()), "apt-get install chromium failed");
    }
    find().expect("the dashboard's tests need Chromium: apt-get install chromium (Debian) or put it on PATH")
}

/// A headless Chromium run with its own profile.
struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    fn new() -> Browser {
        Browser { binary: chromium(), profile: tempfile::tempdir().unwrap() }
    }

    fn command(&self, width: u32, height: u32) -> Command {
        let mut command = Command::new(&self.binary);
        command.args([
            "--headless",
            // Tests run as root in CI, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", self.profile.path().display()),
            &format!("--window-size={width},{height}"),
        ]);
        command
    }

    /// The DOM when the page has loaded, after its script ran (a deferred
    /// script runs before the load event; the event stream it opens does
    /// not hold the load back).
    fn dom(&self, url: &str) -> String {
        let output = self.command(1280, 900).arg("--dump-dom").arg(url).output().unwrap();
        assert!(
            output.status.success(),
            "chromium --dump-dom {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A screenshot at a phone's size, decoded: (width, height, distinct
    /// colours).
    fn screenshot(&self, url: &str, file: &Path) -> (u32, u32, usize) {
        let output = self
            .command(PHONE.0, PHONE.1)
            .arg(format!("--screenshot={}", file.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "chromium --screenshot {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(file).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        let channels = frame.color_type.samples();
        let colours: std::collections::BTreeSet<&[u8]> =
            pixels[..frame.buffer_size()].chunks(channels).collect();
        (frame.width, frame.height, colours.len())
    }
}

/// `GET path` on the node's API address over a plain socket: the status
/// line's code, the headers (lower-case names) and the body.
fn http_get(api: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    http_get_with(api, path, "")
}

/// [`http_get`] with more header lines (each ending in CRLF).
fn http_get_with(api: &str, path: &str, headers: &str) -> (u16, Vec<(String, String)>, String) {
    let address = api.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The text of the first element carrying `data-test="name"`, and its tag.
fn tested<'a>(dom: &'a str, name: &str) -> (&'a str, &'a str) {
    let at = dom.find(&format!("data-test=\"{name}\"")).unwrap_or_else(|| panic!("no {name} in:\n{dom}"));
    let tag = &dom[dom[..at].rfind('<').unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let text = &dom[at..];
    let text = &text[text.find('>').unwrap() + 1..];
    (tag, &text[..text.find('<').unwrap()])
}

/// A `data-NAME="value"` attribute of a tag, parsed.
fn attribute(tag: &str, name: &str) -> Option<u64> {
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    tag[at..at + tag[at..].find('"')?].parse().ok()
}

#[test]
fn the_dashboard_shows_the_market_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let dev = ["--dev", "--block-time-ms", "100", "--interval-ms", "1000"];
    let mut node = start(&dev, &dir.path().join("dev"));
    let api = node.api.clone();
    let url = api.url().trim_end_matches('/').to_string();
    let browser = Browser::new();

    wait_for("a trade and two settlements", &api, Duration::from_secs(60), || {
        let status = api.status().unwrap();
        (status.trades > 0 && status.settlements > 1).then_some(())
    });
    let status: Status = exact(&api, "/v1/status");
    let currency = api.community().unwrap().genesis.currency;

    // The community: its name, the views, the charts, and the script ran
    // (it shows each time in the browser's zone with the UTC time as title).
    let dom = browser.dom(&format!("{url}/"));
    assert!(dom.contains("<h1>The community's market</h1>"), "{dom}");
    assert!(dom.contains("Gridshare dev community"));
    assert!(dom.contains("aria-label=\"Clearing price per interval\""));
    assert!(dom.contains("aria-label=\"Energy traded per interval\""));
    // The script ran: it wrote each time in the browser's zone and kept the
    // UTC time as the element's title.
    let time = &dom[dom.find("<time datetime=\"").expect("a time")..];
    let time = &time[..time.find("</time>").unwrap()];
    let utc = &time[16..16 + time[16..].find('"').unwrap()];
    assert!(time.contains(&format!("title=\"{utc}\"")), "the script did not run: {time}");
    assert!(!time.ends_with(&format!(">{utc}")), "the script did not rewrite the time: {time}");
    // Each row of recent clearings says what the API says of its interval.
    let table = &dom[dom.find("Recent clearings").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert!(!rows.is_empty(), "{table}");
    for row in rows {
        let link = &row[row.find("/intervals/").unwrap() + 11..];
        let number: u64 = link[..link.find('"').unwrap()].parse().unwrap();
        let interval: Interval = exact(&api, &format!("/v1/intervals/{number}"));
        let receipt = &interval.clearing.unwrap().receipt;
        let shown = receipt
            .clearing_price_micro_per_kwh
            .map_or("–".to_string(), |micro| format!("{} {currency}/kWh", format_price(micro)));
        assert!(row.contains(&shown), "interval {number}: {shown} not in {row}");
    }

    // An interval that traded: its price, curves and every trade.
    let traded = (0..status.next_clearing_interval)
        .rev()
        .map(|number| exact::<Interval>(&api, &format!("/v1/intervals/{number}")))
        .find(|interval| interval.clearing.as_ref().is_some_and(|clearing| clearing.receipt.volume_wh > 0))
        .unwrap();
    let receipt = &traded.clearing.as_ref().unwrap().receipt;
    let dom = browser.dom(&format!("{url}/intervals/{}", traded.interval));
    assert!(dom.contains(&format!("<h1>Interval {}</h1>", traded.interval)));
    let price = format!("{} {currency}/kWh", format_price(receipt.clearing_price_micro_per_kwh.unwrap()));
    assert_eq!(tested(&dom, "price").1, price);
    // It may have settled since the API was asked.
    assert!(["cleared", "settled"].contains(&tested(&dom, "status").1), "{dom}");
    assert_eq!(dom.matches("<path class=\"line").count(), 2, "a supply and a demand curve");
    let trades = &dom[dom.find("<caption>Trades</caption>").unwrap()..];
    let trades = &trades[..trades.find("</table>").unwrap()];
    assert_eq!(trades.matches("<tr>").count(), receipt.trades.len() + 1);

    // A settled interval: what each zone's meters measured, as the API says.
    let settled = (0..status.next_settlement_interval)
        .rev()
        .map(|number| exact::<Interval>(&api, &format!("/v1/intervals/{number}")))
        .find(|interval| interval.settlement.is_some())
        .unwrap();
    let zones = &settled.settlement.as_ref().unwrap().zones;
    let dom = browser.dom(&format!("{url}/intervals/{}", settled.interval));
    let table = &dom[dom.find("What each zone's meters measured").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), zones.len() + 1, "{table}");
    let counts = format!("{} / {}", zones[0].measured_meters, zones[0].estimated_meters);
    assert!(table.contains(&counts), "{counts} not in {table}");

    // The seller's household: what it saved over the span the page names,
    // recomputed from its bills and each interval's tariffs.
    let seller = receipt.trades[0].seller;
    let dom = browser.dom(&format!("{url}/accounts/{seller}"));
    assert!(dom.contains(&seller.to_string()));
    let (tag, saved) = tested(&dom, "saved");
    let from = attribute(tag, "data-from-interval").unwrap();
    let to = attribute(tag, "data-to-interval").unwrap();
    let bills: Bills =
        exact(&api, &format!("/v1/accounts/{seller}/bills?from_interval={from}&to_interval={to}"));
    assert!(!bills.bills.is_empty());
    let expected: i128 = bills
        .bills
        .iter()
        .map(|bill| {
            let tariffs = api.interval(bill.interval).unwrap().settlement.unwrap().tariffs;
            bill.bill.total_nano
                - grid_only_nano(
                    bill.bill.metered_net_export_wh,
                    tariffs.grid_feed_in_micro_per_kwh,
                    tariffs.grid_import_micro_per_kwh,
                )
        })
        .sum();
    assert_eq!(saved, format_money(expected, &currency));
    assert!(dom.contains("aria-label=\"The household's bill"));
    // The form on the community page leads to the same page.
    let (code, headers, _) = http_get(&url, &format!("/accounts?key={seller}"));
    assert_eq!(code, 303);
    assert!(
        headers.iter().any(|(name, value)| name == "location" && *value == format!("/accounts/{seller}"))
    );

    // The operator: a validator alone is ready, and it signed its tip.
    let dom = browser.dom(&format!("{url}/operator"));
    assert_eq!(tested(&dom, "ready").1, "ready");
    let validator = api.community().unwrap().genesis.validators[0].key.to_string();
    let row = &dom[dom.find(&format!("title=\"{validator}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.ends_with("<td>yes</td>"), "{row}");

    // The regulator: the audit of the node's own ledger passes.
    let dom = browser.dom(&format!("{url}/regulator"));
    assert!(dom.contains("href=\"/regulator/audit\"") && dom.contains("href=\"/v1/export\""));
    assert!(dom.contains("action=\"/regulator/report\"") && dom.contains("name=\"kind\""), "{dom}");
    let dom = browser.dom(&format!("{url}/regulator/audit"));
    assert_eq!(tested(&dom, "verdict").1, "passed: no findings", "{dom}");

    // A report from the regulator's form: every trade of the traded
    // interval, as CSV with UTC times, named for its days.
    // From yesterday to tomorrow: the traded interval, whenever this runs.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let (yesterday, tomorrow) = (today.yesterday().unwrap(), today.tomorrow().unwrap());
    let query = format!("kind=trades&from={yesterday}&to={tomorrow}&tz=Etc%2FUTC");
    let (code, headers, body) = http_get(&url, &format!("/regulator/report?{query}"));
    assert_eq!(code, 200, "{body}");
    let header =
        |wanted: &str| headers.iter().find(|(name, _)| name == wanted).map(|(_, value)| value.clone());
    assert_eq!(header("content-type").as_deref(), Some("text/csv; charset=utf-8"));
    assert_eq!(
        header("content-disposition"),
        Some(format!(
            "attachment; filename=\"gridshare-trades-{yesterday}-{}.csv\"",
            today.tomorrow().unwrap()
        ))
    );
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines[0].starts_with("interval,start,end,seller,buyer,energy_kwh,"), "{}", lines[0]);
    let rows: Vec<&&str> =
        lines.iter().filter(|line| line.starts_with(&format!("{},", traded.interval))).collect();
    assert_eq!(rows.len(), receipt.trades.len(), "{body}");
    let start = gridshare_api::report::rfc3339_in(traded.start_ms, &jiff::tz::TimeZone::UTC);
    assert!(rows[0].contains(&format!(",{start},")) && start.ends_with("+00:00"), "{} {start}", rows[0]);
    for (query, says) in [
        ("kind=bill&from=2026-11-01&to=2026-11-02", "is not a report"),
        ("kind=trades&from=2026-11-02&to=2026-10-01", "is not before"),
        ("kind=trades&from=2024-01-01&to=2026-01-01", "at most 366 days"),
        ("kind=trades&from=2026-11-01&to=2026-11-02&tz=Mars%2FOlympus", "unknown time zone"),
        ("kind=trades&from=2026-11-01&to=2026-11-02&per=day", "sums bills only"),
        ("kind=trades&from=yesterday&to=2026-11-02", "is not a day"),
        ("kind=trades&from=2026-11-01&to=2026-11-02&color=red", "unknown parameter"),
    ] {
        let (code, _, body) = http_get(&url, &format!("/regulator/report?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }

    // On a phone: the pages render, and not blank.
    for (name, path) in [("community", "/".to_string()), ("household", format!("/accounts/{seller}"))] {
        let file = dir.path().join(format!("{name}.png"));
        let (width, height, colours) = browser.screenshot(&format!("{url}{path}"), &file);
        assert_eq!((width, height), PHONE, "{name}");
        assert!(colours > 16, "the {name} page looks blank: {colours} colours");
    }

    // What names nothing is a page with a 404; what a URL carries is
    // escaped; every page forbids framing and foreign scripts.
    let unknown = "ab".repeat(32);
    for (path, says) in [
        (format!("/accounts/{unknown}"), "is not registered"),
        ("/accounts/not-a-key".to_string(), "is not an account key"),
        ("/intervals/99999999999".to_string(), "not open for offers yet"),
        ("/intervals/next".to_string(), "there is no interval"),
    ] {
        let (code, headers, body) = http_get(&url, &path);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(headers.iter().any(|(name, value)| name == "content-type" && value.starts_with("text/html")));
        assert!(body.contains("<h1>Not found</h1>") && body.contains(says), "{path}: {body}");
        let dom = browser.dom(&format!("{url}{path}"));
        assert!(dom.contains("<h1>Not found</h1>"), "{path} in the browser: {dom}");
    }
    let (code, headers, body) = http_get(&url, "/accounts/%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(code, 404);
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !body.contains("<script>alert"),
        "{body}"
    );
    let (code, _, body) = http_get(&url, "/accounts?key=12ab");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a 64-digit hex public key"), "{body}");
    let policy = headers.iter().find(|(name, _)| name == "content-security-policy").map(|(_, value)| value);
    assert!(policy.is_some_and(
        |policy| policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'")
    ));
    // Another site's image cannot load a page, nor its link start an audit.
    let image = "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n";
    let link = "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n";
    assert_eq!(http_get_with(&url, "/", image).0, 403);
    assert_eq!(http_get_with(&url, "/regulator/audit", link).0, 403);
    assert_eq!(http_get_with(&url, "/", link).0, 200);
    // A dashboard page never changes anything: it answers GET alone.
    let response = api.raw(Method::Post, "/", Some("application/json"), &[], b"{}").unwrap();
    assert_eq!(response.status, 405);

    stop(&mut node);
}
