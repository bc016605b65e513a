//! Writes the seed corpus of every fuzz target into `corpus/<target>/`:
//! real objects of a short trading chain (`gridshare_ledger_fuzz::seeds`).
//! Run on stable: `cargo run --manifest-path ledger/fuzz/Cargo.toml --example seeds`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = gridshare_ledger_fuzz::seeds();
    for (index, (target, bytes)) in seeds.iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{index:03}")), bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}
