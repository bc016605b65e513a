//! What the end checks read back: the exported ledger, summarized block by
//! block (hash, state root, certificate, transaction ids, clearings and
//! bills, the DSO's zone limits), and the nodes' logs, which name every transaction a mempool
//! dropped and why.

use std::collections::BTreeMap;
use std::path::Path;

use gridshare_ledger::Hash;
use gridshare_ledger::block::{ClearingReceipt, Receipt, SettlementReceipt};
use gridshare_ledger::export::{ExportError, ExportReader};
use gridshare_ledger::genesis::{Genesis, ZoneLimits};
use gridshare_ledger::tx::Tx;

/// One block of the export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    pub height: u64,
    pub hash: Hash,
    pub state_root: Hash,
    pub timestamp_ms: u64,
    pub transactions: usize,
    /// The certificate verifies against the genesis validators.
    pub certificate_valid: bool,
    pub certificate_signatures: usize,
}

/// One `SetZoneLimits` on the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneLimitsSet {
    pub height: u64,
    pub zone: String,
    pub first_interval: u64,
    pub intervals: u32,
    pub limits: ZoneLimits,
}

/// The exported ledger.
#[derive(Debug)]
pub struct Chain {
    pub genesis: Genesis,
    pub blocks: Vec<BlockSummary>,
    /// Transaction id (hex) → height.
    pub transactions: BTreeMap<String, u64>,
    pub clearings: Vec<(u64, ClearingReceipt)>,
    pub settlements: Vec<(u64, SettlementReceipt)>,
    /// The DSO's `SetZoneLimits`, in ledger order.
    pub zone_limits: Vec<ZoneLimitsSet>,
    /// Why reading stopped early, if it did.
    pub read_error: Option<String>,
}

impl Chain {
    /// Reads an export file.
    pub fn read(path: &Path) -> Result<Chain, ExportError> {
        let file = std::fs::File::open(path)?;
        let (mut reader, genesis) = ExportReader::open(std::io::BufReader::new(file))?;
        let community = genesis.community_id;
        let mut chain = Chain {
            genesis,
            blocks: Vec::new(),
            transactions: BTreeMap::new(),
            clearings: Vec::new(),
            settlements: Vec::new(),
            zone_limits: Vec::new(),
            read_error: None,
        };
        loop {
            let certified = match reader.next_block() {
                Ok(Some(certified)) => certified,
                Ok(None) => break,
                Err(error) => {
                    chain.read_error = Some(error.to_string());
                    break;
                }
            };
            let block = &certified.block;
            let height = block.header.height;
            for tx in &block.transactions {
                chain.transactions.insert(tx.id(&community).to_string(), height);
                if let Tx::SetZoneLimits { zone, first_interval, intervals, limits, .. } = &tx.tx {
                    chain.zone_limits.push(ZoneLimitsSet {
                        height,
                        zone: zone.clone(),
                        first_interval: *first_interval,
                        intervals: *intervals,
                        limits: *limits,
                    });
                }
            }
            for receipt in &block.receipts {
                match receipt {
                    Receipt::Clearing(clearing) => chain.clearings.push((height, clearing.clone())),
                    Receipt::Settlement(settlement) => chain.settlements.push((height, settlement.clone())),
                }
            }
            chain.blocks.push(BlockSummary {
                height,
                hash: block.header.hash(),
                state_root: block.header.state_root,
                timestamp_ms: block.header.timestamp_ms,
                transactions: block.transactions.len(),
                certificate_valid: certified.certificate.verify(&chain.genesis, &block.header).is_ok(),
                certificate_signatures: certified.certificate.signatures.len(),
            });
        }
        Ok(chain)
    }

    pub fn height(&self) -> u64 {
        self.blocks.last().map_or(0, |block| block.height)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Option<&BlockSummary> {
        let index = usize::try_from(height.checked_sub(1)?).ok()?;
        self.blocks.get(index).filter(|block| block.height == height)
    }
}

/// A transaction a node dropped from its mempool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    pub node: String,
    /// The rejection's machine code, from its message.
    pub reason: &'static str,
    pub message: String,
}

/// The reason code of a rejection message as the node logs it (the
/// ledger's `Rejection` display).
pub fn reason_of(message: &str) -> &'static str {
    const PATTERNS: [(&str, &str); 10] = [
        ("closed for offers", "interval_closed"),
        ("is not above its last nonce", "stale_nonce"),
        ("skips ahead", "nonce_gap"),
        ("is not after its last reading", "reading_not_increasing"),
        ("after the block time", "reading_before_interval_end"),
        ("insufficient funds", "insufficient_funds"),
        ("open offers", "too_many_open_offers"),
        ("no self trades", "both_sides"),
        ("exceeds the meters' limit", "energy_above_meter_limit"),
        ("register went down", "register_decreased"),
    ];
    PATTERNS.iter().find(|(pattern, _)| message.contains(pattern)).map_or("other", |(_, code)| code)
}

/// Removes ANSI colour codes, should a node's log have them.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every "dropped from the mempool" line of a node's log, by transaction id.
pub fn drops_in_log(node: &str, log: &str, into: &mut BTreeMap<String, Vec<Drop>>) {
    for line in log.lines().filter(|line| line.contains("dropped from the mempool")) {
        let line = plain(line);
        let Some(id) = line.split("id=").nth(1).map(|rest| rest.chars().take(64).collect::<String>()) else {
            continue;
        };
        let message = line.split("rejection=").nth(1).unwrap_or("").trim().to_string();
        into.entry(id).or_default().push(Drop {
            node: node.to_string(),
            reason: reason_of(&message),
            message,
        });
    }
}

/// The node's own warnings and errors in its log (a banned peer, an invalid
/// block, a transaction left out of a block), without their timestamps: the
/// message and its fields, and how often each came.
pub fn warnings_in_log(log: &str) -> BTreeMap<String, u64> {
    let mut warnings = BTreeMap::new();
    for line in log.lines() {
        let line = plain(line);
        let Some(start) = line.find(" WARN gridshare_node").or_else(|| line.find(" ERROR gridshare_node"))
        else {
            continue;
        };
        // Fields (peer ids, scores, times) differ line by line; the message
        // is what counts: the text before the first ` name=` field.
        let text = line[start..].trim();
        let message = text
            .match_indices(' ')
            .find(|(at, _)| {
                let word = text[at + 1..].split(' ').next().unwrap_or("");
                word.split_once('=').is_some_and(|(name, _)| {
                    !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_')
                })
            })
            .map_or(text, |(at, _)| &text[..at]);
        *warnings.entry(message.to_string()).or_default() += 1;
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_read_from_a_log_with_their_reason() {
        let id = "ab".repeat(32);
        let log = format!(
            "2026-11-21T18:01:21.123Z  INFO gridshare_node::node: interval cleared height=3\n\
             2026-11-21T18:01:22.456Z  INFO gridshare_node::node: dropped from the mempool id={id} rejection=interval 14 closed for offers at 1000 ms; the block time is 1200 ms\n\
             \u{1b}[2m2026\u{1b}[0m INFO dropped from the mempool \u{1b}[3mid\u{1b}[0m\u{1b}[2m=\u{1b}[0m{id} rejection=nonce 3 of x is not above its last nonce 4\n"
        );
        let mut drops = BTreeMap::new();
        drops_in_log("household-1", &log, &mut drops);
        let found = &drops[&id];
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].reason, "interval_closed");
        assert_eq!(found[1].reason, "stale_nonce");
        assert_eq!(found[0].node, "household-1");
        assert_eq!(reason_of("nonce 6 of ab skips ahead: the next is 5"), "nonce_gap");
        assert_eq!(reason_of("something new"), "other");
    }

    #[test]
    fn warnings_are_counted_by_message() {
        let log = "2026-11-21T18:54:59.541840Z  WARN gridshare_node::node: banning a peer that sent invalid data peer=12D3KooWM score=Some(-94.5)\n\
                   2026-11-21T18:55:08.819784Z  WARN libp2p_kad::behaviour: Failed to trigger bootstrap: No known peers.\n\
                   2026-11-21T18:56:59.541840Z  WARN gridshare_node::node: banning a peer that sent invalid data peer=12D3KooWX score=Some(-90.1)\n\
                   2026-11-21T18:57:00.000000Z  WARN gridshare_node::node: left out of the block kind=\"offer\" rejection=interval 11 closed\n";
        let warnings = warnings_in_log(log);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings["WARN gridshare_node::node: left out of the block"], 1);
        assert_eq!(warnings["WARN gridshare_node::node: banning a peer that sent invalid data"], 2);
    }
}
