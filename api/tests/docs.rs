//! docs/API.md checked against the types: every JSON example there is
//! tagged with the type of its body (```` ```json Status ````), and each one
//! parses into that type and serializes back to exactly the same JSON, so
//! the docs show no field the type lacks, none that it renames, and every
//! field it has. Every type of a body has an example, every error code is
//! documented, and the bounds the docs state are the crate's.

use std::collections::BTreeSet;

use gridshare_api::bounds::{INTERVAL_SPAN_MAX, LIST_MAX, REQUEST_BYTES_MAX, STREAMS_MAX};
use gridshare_api::{
    Account, Admitted, Bills, Block, BlockEvent, Clearing, ErrorBody, ErrorCode, EvidenceList,
    GenesisResponse, Health, Interval, IsolateRequest, Isolated, Lagged, Meter, MeterReadings, Nonce, Offers,
    Proof, SettlementEvent, Status, SubmitRequest, TariffSchedule, Trades, TransactionStatus, ZoneFlows,
    Zones,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The examples: (type, JSON text, line), from every fence whose info
/// string is `json TYPE`, indented or not.
fn examples(text: &str) -> Vec<(String, String, usize)> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```json") else { continue };
        let tag = info.trim();
        assert!(!tag.is_empty(), "docs/API.md:{}: a JSON example without its type", number + 1);
        let mut body = String::new();
        for (_, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        found.push((tag.to_string(), body, number + 1));
    }
    found
}

/// `json` parses into `T` and serializes back to the same JSON.
fn round_trip<T: DeserializeOwned + Serialize>(json: &serde_json::Value) -> Result<(), String> {
    let parsed: T = serde_json::from_value(json.clone()).map_err(|error| error.to_string())?;
    let back = serde_json::to_value(&parsed).map_err(|error| error.to_string())?;
    if back != *json {
        return Err(format!("serialized back as {back}"));
    }
    Ok(())
}

fn check(tag: &str, json: &serde_json::Value) -> Result<(), String> {
    match tag {
        "GenesisResponse" => round_trip::<GenesisResponse>(json),
        "Status" => round_trip::<Status>(json),
        "Health" => round_trip::<Health>(json),
        "SubmitRequest" => round_trip::<SubmitRequest>(json),
        "Admitted" => round_trip::<Admitted>(json),
        "ErrorBody" => round_trip::<ErrorBody>(json),
        "TransactionStatus" => round_trip::<TransactionStatus>(json),
        "Block" => round_trip::<Block>(json),
        "Account" => round_trip::<Account>(json),
        "Nonce" => round_trip::<Nonce>(json),
        "Meter" => round_trip::<Meter>(json),
        "MeterReadings" => round_trip::<MeterReadings>(json),
        "Offers" => round_trip::<Offers>(json),
        "Interval" => round_trip::<Interval>(json),
        "Trades" => round_trip::<Trades>(json),
        "Bills" => round_trip::<Bills>(json),
        "Proof" => round_trip::<Proof>(json),
        "BlockEvent" => round_trip::<BlockEvent>(json),
        "Clearing" => round_trip::<Clearing>(json),
        "SettlementEvent" => round_trip::<SettlementEvent>(json),
        "Lagged" => round_trip::<Lagged>(json),
        "EvidenceList" => round_trip::<EvidenceList>(json),
        "IsolateRequest" => round_trip::<IsolateRequest>(json),
        "Isolated" => round_trip::<Isolated>(json),
        "Zones" => round_trip::<Zones>(json),
        "ZoneFlows" => round_trip::<ZoneFlows>(json),
        "TariffSchedule" => round_trip::<TariffSchedule>(json),
        other => Err(format!("`{other}` is not a type of gridshare-api this test knows")),
    }
}

/// Every body of the API, by the tag its example has.
const BODIES: [&str; 26] = [
    "GenesisResponse",
    "Status",
    "SubmitRequest",
    "Admitted",
    "ErrorBody",
    "TransactionStatus",
    "Block",
    "Account",
    "Nonce",
    "Meter",
    "MeterReadings",
    "Offers",
    "Interval",
    "Trades",
    "Bills",
    "Proof",
    "BlockEvent",
    "Clearing",
    "SettlementEvent",
    "Lagged",
    "EvidenceList",
    "IsolateRequest",
    "Isolated",
    "Zones",
    "ZoneFlows",
    "TariffSchedule",
];

#[test]
fn every_example_is_exactly_its_type() {
    let text = docs();
    let examples = examples(&text);
    let mut problems = Vec::new();
    for (tag, body, line) in &examples {
        let json: serde_json::Value = match serde_json::from_str(body) {
            Ok(json) => json,
            Err(error) => {
                problems.push(format!("docs/API.md:{line}: `{tag}` example is not JSON: {error}"));
                continue;
            }
        };
        if let Err(problem) = check(tag, &json) {
            problems.push(format!("docs/API.md:{line}: `{tag}` example: {problem}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let tags: BTreeSet<&str> = examples.iter().map(|(tag, _, _)| tag.as_str()).collect();
    let missing: Vec<&str> = BODIES.iter().copied().filter(|body| !tags.contains(body)).collect();
    assert!(missing.is_empty(), "docs/API.md has no example of {missing:?}");
}

/// The checker itself refuses what it should: a field the type lacks, a
/// missing field, a renamed value, a number for money.
#[test]
fn the_check_refuses_what_the_types_do_not_say() {
    let nonce = serde_json::json!({ "key": "ab".repeat(32), "last_nonce": 4 });
    assert_eq!(check("Nonce", &nonce), Ok(()));
    let mut extra = nonce.clone();
    extra["extra"] = serde_json::json!(1);
    assert!(check("Nonce", &extra).unwrap_err().contains("serialized back"));
    assert!(check("Nonce", &serde_json::json!({ "key": "ab".repeat(32) })).is_err());
    let trades = serde_json::json!({ "trades": [{ "interval": 3, "height": 23, "side": "sold",
        "offer": "ab".repeat(32), "counterparty": "cd".repeat(32), "energy_wh": 900,
        "price_micro_per_kwh": 120000, "amount_nano": "108000000" }] });
    assert!(check("Trades", &trades).is_err(), "`sold` is not a side");
    let mut money = trades.clone();
    money["trades"][0]["side"] = serde_json::json!("sell");
    assert_eq!(check("Trades", &money), Ok(()));
    money["trades"][0]["amount_nano"] = serde_json::json!(108000000);
    assert!(check("Trades", &money).is_err(), "money is a string");
    assert!(check("Unknown", &nonce).is_err());
}

#[test]
fn every_error_code_is_documented() {
    let text = docs();
    let codes = ErrorCode::ALL;
    // Each code in the row of its status in the table of errors.
    for code in codes {
        let row = text
            .lines()
            .find(|line| line.starts_with(&format!("| {} |", code.status())))
            .unwrap_or_else(|| panic!("docs/API.md has no row for status {}", code.status()));
        assert!(
            row.contains(&format!("`{}`", code.as_str())),
            "`{code}` is not in the row of {}",
            code.status()
        );
    }
}

#[test]
fn the_bounds_stated_are_the_crates() {
    let text = docs();
    let thousands = |value: usize| {
        let digits = value.to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    };
    for stated in [
        format!("Request bodies are at most {} KiB", REQUEST_BYTES_MAX / 1024),
        format!("`INTERVAL_SPAN_MAX` = {INTERVAL_SPAN_MAX} intervals"),
        format!("lists at most {} items", thousands(LIST_MAX)),
        format!("`STREAMS_MAX` = {STREAMS_MAX} at once"),
    ] {
        assert!(text.contains(&stated), "docs/API.md does not say: {stated}");
    }
}
