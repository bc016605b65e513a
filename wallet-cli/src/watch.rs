//! `gridshare watch`: follows a node's server-sent events and prints each
//! clearing and settlement as it happens. The client's event stream reads
//! them as they arrive, typed, with every line and event bounded, so
//! nothing is buffered without limit however long it runs.

use std::collections::BTreeMap;
use std::io::Write;

use gridshare_api::blocks::TradeReceipt;
use gridshare_api::bounds::EVENT_BYTES_MAX;
use gridshare_api::client::{ClientError, StreamError};
use gridshare_api::events::{Event, EventError};
use gridshare_api::{Bill, Side};

use crate::amount::{format_kwh, format_money, format_price};
use crate::keystore::Role;
use crate::market_time::{format_utc, now_ms};
use crate::wallet::{CommandError, Wallet, plural, write_json};

/// `gridshare watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Print one JSON object a line for programs: {"event": ..., "data": ...}.
    #[arg(long)]
    pub json: bool,
}

/// Who is watching: the currency, and the keystore's accounts by public key,
/// whose trades and bills are pointed out.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub currency: String,
    pub accounts: BTreeMap<String, String>,
}

impl Audience {
    /// `; yours: home bought 1.000 kWh at 0.550000 EUR/kWh` for the trades of
    /// the audience's accounts in a clearing's list of trades.
    fn own_trades(&self, trades: &[TradeReceipt]) -> String {
        let mut parts = Vec::new();
        for trade in trades {
            for (side, key) in [(Side::Buy, trade.buyer), (Side::Sell, trade.seller)] {
                if let Some(name) = self.accounts.get(&key.to_string()) {
                    let verb = if side == Side::Buy { "bought" } else { "sold" };
                    parts.push(format!(
                        "{name} {verb} {} kWh at {} {}/kWh",
                        format_kwh(trade.energy_wh),
                        format_price(trade.price_micro_per_kwh),
                        self.currency
                    ));
                }
            }
        }
        if parts.is_empty() { String::new() } else { format!("; yours: {}", parts.join(", ")) }
    }

    /// `; yours: home -0.49 EUR` for the bills of the audience's accounts.
    fn own_bills(&self, bills: &[Bill]) -> String {
        let parts: Vec<String> = bills
            .iter()
            .filter_map(|bill| {
                let name = self.accounts.get(&bill.account.to_string())?;
                Some(format!("{name} {}", format_money(bill.total_nano, &self.currency)))
            })
            .collect();
        if parts.is_empty() { String::new() } else { format!("; yours: {}", parts.join(", ")) }
    }
}

fn count(items: usize) -> u64 {
    u64::try_from(items).unwrap_or(u64::MAX)
}

/// An event for people, `None` for events `watch` does not show (blocks).
pub fn describe(event: &Event, audience: &Audience) -> Option<String> {
    let currency = &audience.currency;
    Some(match event {
        Event::Clearing(clearing) => {
            let receipt = &clearing.receipt;
            if receipt.volume_wh == 0 {
                format!("interval {} cleared at height {}: no trade", receipt.interval, clearing.height)
            } else {
                let price = receipt.clearing_price_micro_per_kwh.map_or_else(
                    || "pay-as-bid prices".to_string(),
                    |p| format!("{} {currency}/kWh", format_price(p)),
                );
                format!(
                    "interval {} cleared at height {}: {} kWh at {price} in {}{}",
                    receipt.interval,
                    clearing.height,
                    format_kwh(receipt.volume_wh),
                    plural(count(receipt.trades.len()), "trade", "trades"),
                    audience.own_trades(&receipt.trades)
                )
            }
        }
        Event::Settlement(settlement) => format!(
            "interval {} settled at height {}: {}{}",
            settlement.interval,
            settlement.height,
            plural(count(settlement.bills.len()), "bill", "bills"),
            audience.own_bills(&settlement.bills)
        ),
        Event::Lagged(lagged) => {
            format!("fell behind the node: {} missed", plural(lagged.missed, "event", "events"))
        }
        Event::Block(_) => return None,
    })
}

/// Whether writing failed because the reader went away (`watch | head`).
fn closed(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}

/// Follows `events`, writing each clearing and settlement to `out`, until
/// the stream ends (an error) or `out` is closed (success).
pub fn follow(
    events: impl Iterator<Item = Result<Event, StreamError>>,
    url: &str,
    audience: &Audience,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let gone = |cause: String| CommandError::Node(ClientError::Unreachable { url: url.to_string(), cause });
    for event in events {
        let event = match event {
            Ok(event) => event,
            Err(StreamError::Event(EventError::TooLarge { name })) => {
                eprintln!("warning: skipped a `{name}` event larger than {EVENT_BYTES_MAX} bytes");
                continue;
            }
            Err(StreamError::Event(error)) => {
                eprintln!("warning: {error}");
                continue;
            }
            Err(StreamError::Broken { cause, .. }) => {
                return Err(gone(format!("the event stream broke off: {cause}")));
            }
        };
        let written = if json {
            if matches!(event, Event::Block(_)) {
                continue;
            }
            write_json(out, &event)
        } else {
            match describe(&event, audience) {
                Some(text) if matches!(event, Event::Lagged(_)) => {
                    eprintln!("warning: {text}");
                    continue;
                }
                Some(text) => writeln!(out, "{}  {text}", format_utc(now_ms())).map_err(CommandError::from),
                None => continue,
            }
        };
        match written.and_then(|()| out.flush().map_err(CommandError::from)) {
            Ok(()) => {}
            Err(CommandError::Output(error)) if closed(&error) => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    Err(gone("it closed the event stream".to_string()))
}

/// `gridshare watch`: until Ctrl-C.
pub fn watch(wallet: &Wallet, args: &WatchArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let currency = wallet.community()?.currency().to_string();
    // A keystore that cannot be read only means no trade is pointed out.
    let accounts = wallet
        .keys()
        .map(|keys| {
            keys.iter()
                .filter(|file| file.role == Role::Account)
                .map(|file| (file.public_key.clone(), file.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let audience = Audience { currency, accounts };
    let events = wallet.node().events()?;
    if !args.json {
        eprintln!("Watching {} for clearings and settlements (Ctrl-C to stop).", wallet.node().url());
    }
    follow(events, wallet.node().url(), &audience, args.json, out)
}

#[cfg(test)]
mod tests {
    use gridshare_api::client::EventStream;
    use gridshare_api::{BlockEvent, Clearing, ClearingReceipt, Mechanism, SettlementEvent};
    use gridshare_ledger::Hash;
    use gridshare_ledger::ids::PublicKey;

    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey([byte; 32])
    }

    fn bill(account: PublicKey, total_nano: i128) -> Bill {
        Bill {
            account,
            sold_wh: 0,
            bought_wh: 0,
            sold_nano: 0,
            bought_nano: 0,
            fees_nano: 0,
            metered_net_export_wh: 0,
            deviation_wh: 0,
            grid_import_wh: 0,
            grid_import_nano: 0,
            feed_in_wh: 0,
            feed_in_nano: 0,
            total_nano,
            estimated_import_wh: 0,
            estimate_refund_wh: 0,
            estimate_refund_nano: 0,
        }
    }

    fn clearing(interval: u64, height: u64, price: Option<u64>, trades: Vec<TradeReceipt>) -> Event {
        let volume_wh = trades.iter().map(|trade| trade.energy_wh).sum();
        Event::Clearing(Clearing {
            height,
            receipt: ClearingReceipt {
                interval,
                mechanism: Mechanism::Uniform,
                k_thousandths: 500,
                network_fee_micro_per_kwh: 20_000,
                offers: 2,
                clearing_price_micro_per_kwh: price,
                volume_wh,
                trades,
                zones: Vec::new(),
            },
        })
    }

    /// The stream of `events` as a node sends it, then a line of garbage.
    fn stream_of(events: &[Event]) -> String {
        let mut stream = String::from(": keep-alive\n\n");
        for event in events {
            stream += &format!("event: {}\ndata: {}\n\n", event.name(), event.data_json());
        }
        stream + "event: clearing\ndata: not json\n\n"
    }

    #[test]
    fn follows_a_stream_until_it_ends() {
        let (home, neighbour) = (key(1), key(2));
        let trade = TradeReceipt {
            buy_offer: Hash([3; 32]),
            sell_offer: Hash([4; 32]),
            buyer: home,
            seller: neighbour,
            energy_wh: 1_000,
            price_micro_per_kwh: 175_000,
            buyer_price_micro_per_kwh: 175_000,
        };
        let events = [
            Event::Block(BlockEvent { height: 20, hash: Hash([5; 32]), timestamp_ms: 1, transactions: 0 }),
            clearing(14, 20, Some(175_000), vec![trade]),
            clearing(15, 22, None, Vec::new()),
            Event::Settlement(SettlementEvent {
                interval: 10,
                height: 31,
                bills: vec![bill(home, -179_000_000), bill(neighbour, 175_000_000)],
            }),
            Event::Settlement(SettlementEvent {
                interval: 11,
                height: 32,
                bills: vec![bill(neighbour, 0); 2],
            }),
        ];
        let stream = stream_of(&events);
        let recorded =
            |stream: &str| EventStream::from_reader(std::io::Cursor::new(stream.to_string()), "http://node");
        let mut out = Vec::new();
        let audience =
            Audience { currency: "EUR".into(), accounts: [(home.to_string(), "home".to_string())].into() };
        let error = follow(recorded(&stream), "http://node", &audience, false, &mut out).unwrap_err();
        assert!(
            error.to_string().starts_with("node not reachable at http://node: it closed the event stream"),
            "{error}"
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().map(|line| line.split_once(" UTC  ").unwrap().1).collect();
        assert_eq!(
            lines,
            [
                "interval 14 cleared at height 20: 1.000 kWh at 0.175000 EUR/kWh in 1 trade; yours: home bought 1.000 kWh at 0.175000 EUR/kWh",
                "interval 15 cleared at height 22: no trade",
                "interval 10 settled at height 31: 2 bills; yours: home -0.179 EUR",
                "interval 11 settled at height 32: 2 bills",
            ]
        );
        let mut out = Vec::new();
        assert!(follow(recorded(&stream), "http://node", &audience, true, &mut out).is_err());
        let json: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(json.len(), 4);
        assert_eq!(json[0]["event"], "clearing");
        assert_eq!(json[0]["data"]["interval"], 14);
        assert_eq!(json[0]["data"]["height"], 20);
        assert_eq!(json[2]["event"], "settlement");
        assert_eq!(json[2]["data"]["bills"][0]["total_nano"], "-179000000");
    }
}
