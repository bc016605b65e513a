//! The dashboard's HTML: escaping, the page frame (head, navigation, a
//! `main` with one `h1`), tables and description lists. Every text that
//! comes from outside (a community name, a meter's zone, a query) goes
//! through [`Text`]; fragments are strings of HTML built from it.

use std::fmt::{self, Write};

/// Text escaped for HTML content and quoted attributes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The dashboard's views, in the navigation's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum View {
    Community,
    Household,
    Operator,
    Regulator,
}

impl View {
    const ALL: [View; 4] = [View::Community, View::Household, View::Operator, View::Regulator];

    fn path(self) -> &'static str {
        match self {
            View::Community => "/",
            View::Household => "/accounts",
            View::Operator => "/operator",
            View::Regulator => "/regulator",
        }
    }

    fn label(self) -> &'static str {
        match self {
            View::Community => "Community",
            View::Household => "Household",
            View::Operator => "Operator",
            View::Regulator => "Regulator",
        }
    }
}

/// A page being written: its `main`'s content after the `h1`.
#[derive(Debug)]
pub(super) struct Page {
    community: String,
    title: String,
    view: View,
    /// Which events make the page reload (`data-reload-on`): a page that
    /// shows the market follows it.
    reload_on: &'static str,
    /// The node's height when the page was made, until the script follows
    /// the blocks.
    height: Option<u64>,
    /// Whether a `<section>` is open (closed by the next one or the end).
    in_section: bool,
    pub(super) body: String,
}

impl Page {
    pub(super) fn new(community: &str, title: impl Into<String>, view: View) -> Page {
        Page {
            community: community.to_string(),
            title: title.into(),
            view,
            reload_on: "",
            height: None,
            in_section: false,
            body: String::new(),
        }
    }

    /// Reloads the page when the node sends one of `events` (space
    /// separated names of docs/API.md's event stream).
    pub(super) fn reload_on(mut self, events: &'static str) -> Page {
        self.reload_on = events;
        self
    }

    /// Shows the node's height when the page was made.
    pub(super) fn at_height(mut self, height: u64) -> Page {
        self.height = Some(height);
        self
    }

    /// Starts a section headed `title` (an `h2` that labels it, with `id`),
    /// ending the one before.
    pub(super) fn section(&mut self, id: &str, title: &str) {
        self.end_section();
        let _ = write!(self.body, "<section aria-labelledby=\"{id}\"><h2 id=\"{id}\">{}</h2>", Text(title));
        self.in_section = true;
    }

    /// Ends the open section, if one is.
    pub(super) fn end_section(&mut self) {
        if std::mem::take(&mut self.in_section) {
            self.body.push_str("</section>");
        }
    }

    /// Appends a fragment of HTML.
    pub(super) fn push(&mut self, html: impl AsRef<str>) {
        self.body.push_str(html.as_ref());
    }

    pub(super) fn finish(mut self) -> String {
        self.end_section();
        let mut html = String::with_capacity(self.body.len() + 2_048);
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · {community}</title>\
             <link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
             <script src=\"/assets/dashboard.js\" defer></script></head>\
             <body data-reload-on=\"{reload}\"><header><p class=\"brand\"><a href=\"/\">{community}</a> \
             <span class=\"muted\">Gridshare</span></p><nav aria-label=\"Views\"><ul>",
            title = Text(&self.title),
            community = Text(&self.community),
            reload = self.reload_on,
        );
        for view in View::ALL {
            let current = if view == self.view { " aria-current=\"page\"" } else { "" };
            let _ = write!(html, "<li><a href=\"{}\"{current}>{}</a></li>", view.path(), view.label());
        }
        let _ = writeln!(
            html,
            "</ul></nav><p class=\"live\" role=\"status\" aria-live=\"polite\">Block \
             <span data-live=\"height\">{}</span></p></header><main><h1>{}</h1>{}</main>\
             <footer><p>Read-only: this page changes nothing on the ledger. Times are shown in your \
             browser's time zone; the ledger keeps UTC.</p></footer></body></html>",
            self.height.map_or("…".to_string(), |height| height.to_string()),
            Text(&self.title),
            self.body
        );
        html
    }
}

/// One cell of a table: HTML, numeric or not (numbers align right).
#[derive(Clone, Debug)]
pub(super) struct Cell {
    html: String,
    numeric: bool,
}

impl Cell {
    /// Escaped text.
    pub(super) fn text(text: impl AsRef<str>) -> Cell {
        Cell { html: Text(text.as_ref()).to_string(), numeric: false }
    }

    /// A number (escaped), aligned right.
    pub(super) fn number(text: impl AsRef<str>) -> Cell {
        Cell { html: Text(text.as_ref()).to_string(), numeric: true }
    }

    /// HTML built with [`Text`].
    pub(super) fn html(html: String) -> Cell {
        Cell { html, numeric: false }
    }
}

/// A table with a caption, a header row and `rows`; `empty` is said when
/// there are no rows.
pub(super) fn table(caption: &str, headers: &[&str], rows: &[Vec<Cell>], empty: &str) -> String {
    let mut html = String::new();
    if rows.is_empty() {
        let _ = write!(html, "<p class=\"empty\">{}</p>", Text(empty));
        return html;
    }
    let _ = write!(html, "<div class=\"scroll\"><table><caption>{}</caption><thead><tr>", Text(caption));
    for header in headers {
        let _ = write!(html, "<th scope=\"col\">{}</th>", Text(header));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let class = if cell.numeric { " class=\"num\"" } else { "" };
            let _ = write!(html, "<td{class}>{}</td>", cell.html);
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table></div>");
    html
}

/// A description list of (term, HTML) pairs, as summary cards.
pub(super) fn facts(label: &str, items: &[(&str, String)]) -> String {
    let mut html = format!("<dl class=\"facts\" aria-label=\"{}\">", Text(label));
    for (term, value) in items {
        let _ = write!(html, "<div><dt>{}</dt><dd>{value}</dd></div>", Text(term));
    }
    html.push_str("</dl>");
    html
}

/// A time as a `<time>` element: RFC 3339 UTC, which the page's script
/// shows in the browser's zone.
pub(super) fn time(time_ms: u64) -> String {
    let text = rfc3339_utc(time_ms);
    format!("<time datetime=\"{text}\">{text}</time>")
}

/// `2026-11-21T17:20:04Z` (with `.800` when the time has milliseconds).
pub(super) fn rfc3339_utc(time_ms: u64) -> String {
    let timestamp = i64::try_from(time_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    timestamp.to_string()
}

/// A link to an interval's page.
pub(super) fn interval_link(interval: u64) -> String {
    format!("<a href=\"/intervals/{interval}\">{interval}</a>")
}

/// A link to an account's page, showing its key's first 12 digits (the
/// whole key in its title).
pub(super) fn account_link(key: &impl fmt::Display) -> String {
    format!("<a href=\"/accounts/{key}\">{}</a>", short_key(key))
}

/// A key as its first 12 digits, the whole key in its title.
pub(super) fn short_key(key: &impl fmt::Display) -> String {
    let key = key.to_string();
    let short = key.get(..12).unwrap_or(&key);
    format!("<code title=\"{key}\">{short}…</code>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            Text("<script>alert('x') & \"y\"</script>").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        let page = Page::new("<b>Street</b>", "Market & more", View::Community).finish();
        assert!(page.contains("<title>Market &amp; more · &lt;b&gt;Street&lt;/b&gt;</title>"));
        assert!(!page.contains("<b>Street</b>"));
        assert!(page.contains("<a href=\"/\" aria-current=\"page\">Community</a>"));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(1_763_745_604_000), "2025-11-21T17:20:04Z");
        assert_eq!(rfc3339_utc(1_763_745_604_800), "2025-11-21T17:20:04.8Z");
        assert_eq!(rfc3339_utc(u64::MAX), jiff::Timestamp::MAX.to_string());
    }

    #[test]
    fn an_empty_table_says_so() {
        assert_eq!(table("Trades", &["a"], &[], "No trades yet."), "<p class=\"empty\">No trades yet.</p>");
        let html = table("Trades", &["Energy"], &[vec![Cell::number("1.000")]], "");
        assert!(html.contains("<caption>Trades</caption>"));
        assert!(html.contains("<th scope=\"col\">Energy</th>"));
        assert!(html.contains("<td class=\"num\">1.000</td>"));
    }
}
