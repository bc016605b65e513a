//! The export format and the audit: a valid ledger passes with the right
//! counts; any one-byte change, truncation or foreign file is found.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use gridshare_ledger::audit::{audit_export, audit_store};
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::export::{ExportError, ExportReader, ExportWriter, MAGIC};
use gridshare_ledger::state::State;
use gridshare_ledger::store::{MemoryStore, Store};
use gridshare_ledger::testkit::{TestCommunity, trading_chain};

fn export(community: &TestCommunity, chain: &[CertifiedBlock]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = ExportWriter::new(&mut bytes, &community.genesis).unwrap();
    for block in chain {
        writer.block(block).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), chain.len() as u64);
    bytes
}

#[test]
fn a_valid_ledger_passes_with_the_right_counts() {
    let (community, chain) = trading_chain(3, 6, 16);
    let bytes = export(&community, &chain);
    let mut progress = Vec::new();
    let report = audit_export(bytes.as_slice(), |done| progress.push(done)).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert_eq!(report.blocks, 17);
    assert_eq!(report.executed_height, 17);
    assert_eq!(report.transactions, chain.iter().map(|b| b.block.transactions.len() as u64).sum::<u64>());
    assert!(report.intervals_cleared >= 5, "{report:?}");
    assert!(report.trades > 0 && report.energy_traded_wh > 0, "{report:?}");
    assert!(report.settlements >= 3 && report.bills >= 18, "{report:?}");
    assert_eq!(report.accounts, 6);
    assert_eq!(progress.last(), Some(&17));
    assert!(progress.windows(2).all(|pair| pair[0] < pair[1]));
    // The audit's final state root is the chain's.
    assert_eq!(report.state_root, chain.last().unwrap().block.header.state_root);
}

#[test]
fn an_export_reads_back_block_by_block() {
    let (community, chain) = trading_chain(4, 2, 5);
    let bytes = export(&community, &chain);
    let (mut reader, genesis) = ExportReader::open(bytes.as_slice()).unwrap();
    assert_eq!(genesis, community.genesis);
    let mut read = Vec::new();
    while let Some(block) = reader.next_block().unwrap() {
        read.push(block);
    }
    assert_eq!(read, chain);
}

#[test]
fn any_one_byte_change_is_found() {
    let (community, chain) = trading_chain(5, 4, 8);
    let bytes = export(&community, &chain);
    assert!(audit_export(bytes.as_slice(), |_| ()).unwrap().passed());
    // Every byte of the header and the genesis record, then positions spread
    // over the whole file (a prime stride), each flipped in two ways.
    let genesis_end = MAGIC.len() + 2 + 5 + gridshare_ledger::encoding::to_bytes(&community.genesis).len();
    let positions: Vec<usize> =
        (0..genesis_end.min(bytes.len())).chain((genesis_end..bytes.len()).step_by(13)).collect();
    assert!(positions.len() > 400, "{} positions", positions.len());
    for position in positions {
        for mask in [0x01_u8, 0x80] {
            let mut changed = bytes.clone();
            changed[position] ^= mask;
            match audit_export(changed.as_slice(), |_| ()) {
                Ok(report) => assert!(!report.passed(), "byte {position} ^ {mask:#x} went unnoticed"),
                // The magic or version no longer says this is an export, or
                // the genesis cannot be read: nothing can be audited.
                Err(ExportError::NotAnExport | ExportError::Version(_)) => {
                    assert!(position < MAGIC.len() + 2)
                }
                Err(ExportError::Malformed { index: 0, .. }) => assert!(position < genesis_end),
                Err(other) => panic!("byte {position}: unexpected error {other}"),
            }
        }
    }
}

#[test]
fn a_record_longer_than_the_file_is_cut_off() {
    let (community, _) = trading_chain(2, 1, 1);
    let mut bytes = Vec::new();
    // The genesis record only: no block, no end record.
    ExportWriter::new(&mut bytes, &community.genesis).unwrap();
    // A block record (kind 1) that claims 200 MiB and holds 3 bytes.
    bytes.push(1);
    bytes.extend_from_slice(&(200_u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3]);
    let (mut reader, _) = ExportReader::open(bytes.as_slice()).unwrap();
    let error = reader.next_block().unwrap_err();
    assert_eq!(error.to_string(), "record 1: the record is cut off (209715200 bytes)", "{error:?}");
}

#[test]
fn truncation_and_trailing_bytes_are_found() {
    let (community, chain) = trading_chain(6, 2, 4);
    let bytes = export(&community, &chain);
    for cut in [bytes.len() - 1, bytes.len() - 9, bytes.len() / 2] {
        let report = audit_export(&bytes[..cut], |_| ()).unwrap();
        assert!(!report.passed(), "cut at {cut}");
        assert!(report.findings.iter().any(|f| f.object == "export"), "{:?}", report.findings);
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(!audit_export(longer.as_slice(), |_| ()).unwrap().passed());
    // Cut inside the genesis record: not auditable at all.
    let inside_genesis = audit_export(&bytes[..MAGIC.len() + 2 + 5], |_| ());
    assert!(matches!(inside_genesis, Err(ExportError::Malformed { index: 0, .. })), "{inside_genesis:?}");
    assert!(matches!(audit_export(&b"hello, world"[..], |_| ()), Err(ExportError::NotAnExport)));
    assert!(matches!(audit_export(&b""[..], |_| ()), Err(ExportError::NotAnExport)));
}

#[test]
fn a_block_signed_by_a_stranger_or_reordered_is_found() {
    let (community, mut chain) = trading_chain(7, 2, 4);
    // A certificate by a key that is not a validator.
    let stranger = gridshare_ledger::ids::Keypair::from_seed([42; 32]);
    chain[2].certificate =
        gridshare_ledger::block::CommitCertificate::sign(&chain[2].block.header, 0, &[&stranger]);
    let report = audit_export(export(&community, &chain).as_slice(), |_| ()).unwrap();
    let finding = report.findings.iter().find(|f| f.object == "certificate").unwrap();
    assert_eq!(finding.height, Some(3));
    assert!(finding.message.contains("is not a validator"), "{finding}");

    let (community, mut chain) = trading_chain(7, 2, 4);
    chain.swap(1, 2);
    let report = audit_export(export(&community, &chain).as_slice(), |_| ()).unwrap();
    assert!(report.findings.iter().any(|f| f.message.contains("follows height")), "{:?}", report.findings);
}

#[test]
fn a_store_is_audited_like_an_export() {
    let (community, chain) = trading_chain(8, 4, 6);
    let mut store = MemoryStore::new(community.genesis.clone());
    let mut state = State::genesis(&community.genesis);
    for block in &chain {
        state = gridshare_ledger::execute::execute(
            &community.genesis,
            &state,
            &block.block,
            gridshare_ledger::execute::Signatures::Verify,
        )
        .unwrap()
        .0;
        store.commit(block, &state).unwrap();
    }
    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert_eq!(report.blocks, 7);
    let mut bytes = Vec::new();
    gridshare_ledger::export::export_store(&store, &mut bytes).unwrap();
    assert_eq!(bytes, export(&community, &chain));
}

#[test]
fn transactions_and_receipts_are_proven_against_a_certified_header() {
    let (community, chain) = trading_chain(9, 4, 8);
    let genesis = &community.genesis;
    let mut receipts_proven = 0;
    for certified in &chain {
        let (block, header) = (&certified.block, &certified.block.header);
        certified.certificate.verify(genesis, header).unwrap();
        for (index, tx) in block.transactions.iter().enumerate() {
            let proof = block.prove_transaction(index).unwrap();
            header.verify_transaction(tx, &proof).unwrap();
            // Another transaction does not verify with this proof.
            if let Some(other) = block.transactions.get(index + 1) {
                assert!(header.verify_transaction(other, &proof).is_err());
            }
        }
        for (index, receipt) in block.receipts.iter().enumerate() {
            let proof = block.prove_receipt(index).unwrap();
            header.verify_receipt(receipt, &proof).unwrap();
            receipts_proven += 1;
        }
    }
    assert!(receipts_proven >= 3, "{receipts_proven} receipts");
    // A proof relabelled to another tree size is refused by the header check.
    let block = &chain[2].block;
    let mut proof = block.prove_transaction(0).unwrap();
    proof.tree_size += 1;
    let error = block.header.verify_transaction(&block.transactions[0], &proof).unwrap_err();
    assert!(matches!(error, gridshare_ledger::block::InclusionError::WrongTreeSize { .. }), "{error:?}");
}

/// Two conflicting prevotes of the community's validator.
fn equivocation(community: &TestCommunity) -> gridshare_ledger::consensus::VoteEquivocation {
    use gridshare_ledger::block::{Vote, VoteKind};
    let key = &community.validator;
    let id = community.genesis.community_id;
    let vote = |byte| Vote {
        kind: VoteKind::Prevote,
        height: 3,
        round: 0,
        block_hash: Some(gridshare_ledger::Hash([byte; 32])),
        validator: key.public(),
    };
    let (first, second) = (vote(1), vote(2));
    gridshare_ledger::consensus::VoteEquivocation {
        first,
        first_signature: key.sign(&first.signing_bytes(&id)),
        second,
        second_signature: key.sign(&second.signing_bytes(&id)),
    }
}

#[test]
fn equivocation_evidence_is_stored_exported_and_checked_by_the_audit() {
    let (community, chain) = trading_chain(12, 2, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut store = gridshare_ledger::store::RedbStore::create(&path, &community.genesis).unwrap();
    let mut state = State::genesis(&community.genesis);
    for block in &chain {
        let signatures = gridshare_ledger::execute::Signatures::Verify;
        state = gridshare_ledger::execute::execute(&community.genesis, &state, &block.block, signatures)
            .unwrap()
            .0;
        store.commit(block, &state).unwrap();
    }
    let evidence = equivocation(&community);
    store.record_evidence(&evidence).unwrap();
    store.record_evidence(&evidence).unwrap();
    drop(store);
    let store = gridshare_ledger::store::RedbStore::open(&path).unwrap();
    assert_eq!(store.evidence().unwrap(), vec![evidence], "kept once, across a reopen");

    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed() && report.equivocations == 1, "{report:?}");
    let mut bytes = Vec::new();
    gridshare_ledger::export::export_store(&store, &mut bytes).unwrap();
    let report = audit_export(bytes.as_slice(), |_| ()).unwrap();
    assert!(report.passed() && report.equivocations == 1, "{report:?}");

    // Evidence that does not hold is a finding.
    let forged = gridshare_ledger::consensus::VoteEquivocation {
        second_signature: evidence.first_signature,
        ..evidence
    };
    let mut bytes = Vec::new();
    let mut writer = ExportWriter::new(&mut bytes, &community.genesis).unwrap();
    for block in &chain {
        writer.block(block).unwrap();
    }
    writer.evidence(&forged).unwrap();
    writer.finish().unwrap();
    let report = audit_export(bytes.as_slice(), |_| ()).unwrap();
    assert_eq!(report.equivocations, 0);
    assert!(report.findings.iter().any(|f| f.object == "evidence"), "{:?}", report.findings);
}

/// An export of one empty block linked to `genesis`, with a certificate for
/// it that nobody signed and a made-up state root.
fn one_empty_block(genesis: &gridshare_ledger::genesis::Genesis) -> Vec<u8> {
    use gridshare_ledger::block::{Block, BlockHeader, CommitCertificate, receipt_root, tx_root};
    let header = BlockHeader {
        community_id: genesis.community_id,
        height: 1,
        previous_hash: genesis.hash(),
        timestamp_ms: genesis.genesis_time_ms + 500,
        proposer: genesis.validators[0].key,
        tx_root: tx_root(&[]),
        tx_count: 0,
        receipt_root: receipt_root(&[]),
        receipt_count: 0,
        state_root: gridshare_ledger::Hash::ZERO,
    };
    let certificate = CommitCertificate::sign(&header, 0, &[]);
    let block = Block { header, transactions: Vec::new(), receipts: Vec::new() };
    let mut bytes = Vec::new();
    let mut writer = ExportWriter::new(&mut bytes, genesis).unwrap();
    writer.block(&CertifiedBlock { block, certificate }).unwrap();
    writer.finish().unwrap();
    bytes
}

/// Found by the `genesis` fuzz target (`ledger/fuzz`): the audit executed
/// blocks under a genesis it had itself found invalid, and the market-time
/// arithmetic divided by a zero interval length; an invalid genesis's voting
/// powers could also overflow their total in the certificate check.
#[test]
fn an_export_with_an_invalid_genesis_is_audited_without_executing_under_it() {
    use gridshare_ledger::genesis::Validator;
    use gridshare_ledger::ids::PublicKey;
    let valid = TestCommunity::new(13, 0, gridshare_ledger::testkit::test_market(), 1_000).genesis;
    let report = audit_export(one_empty_block(&valid).as_slice(), |_| ()).unwrap();
    let executed = |report: &gridshare_ledger::audit::Report| {
        report.findings.iter().any(|f| f.message.contains("re-execution fails"))
    };
    assert!(executed(&report), "a valid genesis's block is executed: {:?}", report.findings);

    let mut zero_interval = valid.clone();
    zero_interval.market.interval_length_ms = 0;
    let mut overflowing_power = valid.clone();
    overflowing_power.validators[0].voting_power = u64::MAX;
    overflowing_power.validators.push(Validator { key: PublicKey([9; 32]), voting_power: 1 });
    for genesis in [zero_interval, overflowing_power] {
        let report = audit_export(one_empty_block(&genesis).as_slice(), |_| ()).unwrap();
        assert!(report.findings.iter().any(|f| f.object == "genesis"), "{:?}", report.findings);
        assert!(report.findings.iter().any(|f| f.object == "certificate"), "{:?}", report.findings);
        assert!(!executed(&report), "executed under an invalid genesis: {:?}", report.findings);
        assert_eq!((report.blocks, report.executed_height), (1, 0));
    }
}
