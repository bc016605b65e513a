//! End to end: `gridshare meter run` against a dev node, reading a P1 port
//! on loopback that sends DSMR 5 telegrams every 100 ms, among them
//! garbage, truncated telegrams, wrong CRCs, a missing register and a
//! register that goes down, and that disappears for a while. Each interval's
//! registers change at its middle, and every broken telegram comes in an
//! interval's first half: so the reading for interval `i` must be exactly
//! the registers the port served in `i`'s second half, and nothing a broken
//! telegram carried may reach the ledger.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{DevNode, Household, P1Port, PASSPHRASE, now_ms, poll};
use gridshare_api::SpanQuery;
use gridshare_api::client::Client;
use gridshare_cli::gateway::p1::{crc16, telegram};
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::tx::Tx;

/// The registers the port serves in interval `i`'s second half (and in
/// `i + 1`'s first): import and export, tariffs 1 and 2, in Wh.
fn served(i: u64) -> ([u64; 2], [u64; 2]) {
    ([1_000_000 + 250 * i, 500_000 + 100 * i], [20_000 + 50 * i, 7])
}

/// What the port sends `n` telegram periods into an interval's first half
/// (a broken telegram at some of them), given the registers of the
/// interval before.
fn first_half(n: u64, i: u64) -> Vec<u8> {
    let (import, export) = served(i);
    match n {
        2 => b"\x00\xffnoise".to_vec(),
        3 => {
            let whole = telegram(import, export);
            whole[..whole.len() / 2].to_vec()
        }
        4 => {
            // Registers far above, with a CRC that does not hold.
            let mut bad = telegram([import[0] + 999_000, import[1]], export);
            let at = bad.len() - 3;
            bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
            bad
        }
        5 => {
            // A register that went down, its CRC right.
            telegram([import[0] - 10, import[1]], export)
        }
        6 => {
            // The export tariff 2 register missing, its CRC right.
            let text = "/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n\
                        1-0:1.8.2(000001.000*kWh)\r\n1-0:2.8.1(000001.000*kWh)\r\n!";
            let mut bytes = text.as_bytes().to_vec();
            let crc = crc16(&bytes);
            bytes.extend_from_slice(format!("{crc:04X}\r\n").as_bytes());
            bytes
        }
        _ => telegram(import, export),
    }
}

/// What the P1 port serves at `now_ms`: a telegram every 100 ms, the
/// registers of the interval half an interval ago; broken ones in each
/// first half; and, during interval `outage`, no port at all (connections
/// are closed as soon as they are made).
fn served_at(genesis: &Genesis, outage: u64, now_ms: u64) -> Option<Vec<u8>> {
    let length_ms = genesis.market.interval_length_ms;
    let interval = genesis.interval_at(now_ms);
    if interval == outage {
        return None;
    }
    let phase_ms = (now_ms - genesis.genesis_time_ms) % length_ms;
    Some(if phase_ms < length_ms / 2 {
        first_half(phase_ms / 100, interval - 1)
    } else {
        let (import, export) = served(interval);
        telegram(import, export)
    })
}

/// The meter readings of `meter` in the node's blocks, by interval.
fn readings_on_the_ledger(api: &Client, meter: &str) -> BTreeMap<u64, (u64, u64)> {
    let height = api.status().unwrap().height;
    let mut readings = BTreeMap::new();
    for height in 1..=height {
        let block = api.block(height).unwrap();
        let certified: CertifiedBlock =
            from_bytes(&hex::decode(&block.certified_block_hex).unwrap()).unwrap();
        for tx in certified.block.transactions {
            if let Tx::MeterReading(reading) = tx.tx
                && reading.meter.to_string() == meter
            {
                readings.insert(reading.interval, (reading.import_wh_total, reading.export_wh_total));
            }
        }
    }
    readings
}

#[test]
fn a_gateway_signs_the_registers_of_each_interval_end_and_nothing_a_broken_telegram_carried() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let api = Client::new(&node.api).unwrap();
    // The household's account and the registrar in one keystore; the
    // meter's key, encrypted, in the gateway's own.
    let Household { keys: household, gateway, meter: key } =
        Household::register(&node, dir.path(), "7000", "7000");
    let meter = key.to_string();

    // A gateway refuses a keystore that holds an account key.
    household.fails(&["meter", "run", "--p1", "tcp://127.0.0.1:9"], 2, "keys other than meter keys");
    // It waits for a node that is not there, asking again ever later.
    let mut waiting = gateway
        .command(&["--node", "http://127.0.0.1:1", "meter", "run", "--p1", "tcp://127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (said, heard) = std::sync::mpsc::channel();
    let stderr = waiting.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if said.send(line).is_err() {
                return;
            }
        }
    });
    for pause in ["1 s", "2 s"] {
        let line = heard.recv_timeout(Duration::from_secs(10)).expect("the gateway gave up on the node");
        assert!(
            line.contains("not reachable") && line.ends_with(&format!("trying again in {pause}")),
            "{line}"
        );
    }
    assert!(waiting.try_wait().unwrap().is_none(), "the gateway ended");
    waiting.kill().unwrap();
    waiting.wait().unwrap();

    let genesis = api.community().unwrap().genesis;
    let length_ms = genesis.market.interval_length_ms;
    let outage = genesis.interval_at(now_ms()) + 3;
    let port = {
        let genesis = genesis.clone();
        P1Port::serve(Duration::from_millis(100), move |now_ms| served_at(&genesis, outage, now_ms))
    };

    let passphrase_file = dir.path().join("passphrase");
    std::fs::write(&passphrase_file, format!("{PASSPHRASE}\n")).unwrap();
    const INTERVALS: u64 = 7;
    let mut run = gateway
        .command(&[
            "meter",
            "run",
            "--p1",
            &port.address,
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
            "--intervals",
            &INTERVALS.to_string(),
            "--json",
        ])
        .env_remove("GRIDSHARE_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = run.stdout.take().unwrap();
    let lines: Vec<serde_json::Value> =
        BufReader::new(stdout).lines().map(|line| serde_json::from_str(&line.unwrap()).unwrap()).collect();
    let status = run.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut log).unwrap();
    drop(port);
    assert!(status.success(), "{log}");

    // One line per interval end, in order; the outage's interval has no
    // reading, and the gateway said so.
    let ends: Vec<&serde_json::Value> = lines.iter().filter(|line| line.get("interval").is_some()).collect();
    assert_eq!(ends.len() as u64, INTERVALS, "{lines:?}");
    let first = ends[0]["interval"].as_u64().unwrap();
    let mut signed = BTreeMap::new();
    for (offset, end) in (0..).zip(&ends) {
        let interval = first + offset;
        assert_eq!(end["interval"], interval, "{end}");
        if end["signed"] == true {
            let (import, export) = served(interval);
            assert_eq!(end["import_wh_total"], import[0] + import[1], "{end}");
            assert_eq!(end["export_wh_total"], export[0] + export[1], "{end}");
            signed.insert(interval, (import[0] + import[1], export[0] + export[1]));
        }
    }
    assert_eq!(ends.iter().find(|end| end["interval"] == outage).unwrap()["signed"], false, "{ends:?}");
    assert!(signed.len() as u64 >= INTERVALS - 3, "{ends:?}\n{log}");
    // Every broken telegram was counted and logged.
    let counts = &ends.last().unwrap()["telegrams"];
    for kind in ["garbage", "truncated", "bad_crc", "register_down", "missing_register"] {
        assert!(counts[kind].as_u64().unwrap() >= 1, "{kind}: {counts}");
        assert!(log.contains(&format!("skipped ({kind})")), "{kind}: {log}");
    }
    assert!(log.contains("the port closed") || log.contains("nothing read"), "{log}");
    // Each signed reading was admitted.
    let admitted = lines.iter().filter(|line| line["submitted"]["status"] == "admitted").count();
    assert_eq!(admitted, signed.len(), "{lines:?}");

    // The ledger holds exactly the readings signed: the registers served at
    // each interval's end.
    let on_ledger = poll("the readings in blocks", Duration::from_secs(30), &node, || {
        let readings = readings_on_the_ledger(&api, &meter);
        (readings.len() == signed.len()).then_some(readings)
    });
    assert_eq!(on_ledger, signed);
    assert!(length_ms >= 1_000, "the port's 100 ms telegrams fit an interval's halves");

    // The node serves them with the meter's signatures, which verify.
    let span = SpanQuery::between(*signed.keys().next().unwrap(), *signed.keys().last().unwrap());
    let served: BTreeMap<u64, (u64, u64)> = api
        .meter_readings(&key, &span)
        .unwrap()
        .iter()
        .map(|reading| {
            assert!(reading.attestation(key, &genesis.community_id).is_some(), "{reading:?}");
            (reading.interval, (reading.import_wh_total, reading.export_wh_total))
        })
        .collect();
    assert_eq!(served, signed);
    // The household holds no meter key: its offer is attested by the
    // gateway's latest signed reading, from the ledger. (Its bills for all
    // the meter imported are paid first.)
    household.ok(&["credit", "home", "100", "--reference", "deposit"]);
    let offered =
        household.json(&["offer", "sell", "10Wh", "--price", "0.10", "--interval", "next", "--json"]);
    assert_eq!(
        (&offered["status"], &offered["meter"]),
        (&"admitted".into(), &meter.clone().into()),
        "{offered}"
    );
}
