//! A simulated DSMR 5 meter on a TCP port, as a P1 dongle serves one: a
//! telegram every second to every connection, its registers growing at a
//! steady import and export power. For trying `gridshare meter run`
//! without a meter (README.md, docs/METER.md).
//!
//! `cargo run -p gridshare-cli --example p1_meter -- ADDRESS [IMPORT_W] [EXPORT_W]`,
//! for example `127.0.0.1:2323 400 0`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridshare_cli::gateway::p1::telegram;

/// The registers the simulated meter starts from, in Wh.
const IMPORT_START_WH: u64 = 1_000_000;
const EXPORT_START_WH: u64 = 250_000;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: p1_meter ADDRESS [IMPORT_W] [EXPORT_W]";
    let address = args.first().ok_or_else(|| std::io::Error::other(usage))?;
    let power_w = |index: usize| -> std::io::Result<u64> {
        args.get(index).map_or(Ok(0), |text| text.parse().map_err(|_| std::io::Error::other(usage)))
    };
    let (import_w, export_w) = (power_w(1)?, power_w(2)?);
    let listener = TcpListener::bind(address)?;
    eprintln!("a DSMR 5 meter on tcp://{}: {import_w} W import, {export_w} W export", listener.local_addr()?);
    let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepting = clients.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            if let Ok(mut clients) = accepting.lock() {
                clients.push(stream);
            }
        }
    });
    let started = Instant::now();
    loop {
        // Wh since the start: W × ms / 3,600,000, split over the two tariffs.
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let energy_wh = |power_w: u64| power_w.saturating_mul(elapsed_ms) / 3_600_000;
        let import_wh = IMPORT_START_WH + energy_wh(import_w);
        let export_wh = EXPORT_START_WH + energy_wh(export_w);
        let bytes = telegram([import_wh / 2, import_wh - import_wh / 2], [export_wh, 0]);
        if let Ok(mut clients) = clients.lock() {
            clients.retain_mut(|client| client.write_all(&bytes).is_ok());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
