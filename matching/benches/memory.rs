//! Peak memory of `clear` relative to its input, read from the kernel's
//! high-water mark of resident memory (Linux). Run with
//! `cargo bench -p gridshare-matching --bench memory`.

use gridshare_matching::{Order, Params, clear};

mod book;
use book::{Ties, book};

/// A field of /proc/self/status in bytes, e.g. `VmRSS` or `VmHWM`.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() {
    // Criterion-style flags (`--bench`) are passed by cargo; this bench takes
    // an optional tie mode instead.
    let ties = if std::env::args().any(|arg| arg == "few") { Ties::Few } else { Ties::Many };
    let count = 1_000_000;
    let Some(start_bytes) = status_bytes("VmRSS") else {
        println!("memory bench: /proc/self/status is not available on this system");
        return;
    };
    let orders = book(count, ties, 42);
    let input_bytes = (orders.capacity() * size_of::<Order<[u8; 32]>>()) as u64;
    let before_bytes = status_bytes("VmHWM").unwrap_or(0);
    let clearing = clear(orders, &Params::uniform(500).with_network_fee(30_000)).expect("a valid book");
    let peak_bytes = status_bytes("VmHWM").unwrap_or(0);
    let peak_over_start = peak_bytes.saturating_sub(start_bytes);
    let mib = |bytes: u64| format!("{}.{} MiB", bytes >> 20, ((bytes & 0xF_FFFF) * 10) >> 20);
    let ratio_hundredths = peak_over_start * 100 / input_bytes.max(1);
    println!(
        "memory/{ties:?}_ties/{count}: input {}, peak during clear {} above start \
         ({}.{:02}x the input; high-water mark before clear {}), {} trades",
        mib(input_bytes),
        mib(peak_over_start),
        ratio_hundredths / 100,
        ratio_hundredths % 100,
        mib(before_bytes.saturating_sub(start_bytes)),
        clearing.trades.len(),
    );
}
