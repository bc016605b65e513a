//! The export format and the audit: a valid ledger passes with the right
//! counts; any one-byte change, truncation or foreign file is found.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use gridshare_ledger::audit::{audit_export, audit_store};
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::consensus::{Equivocation, ProposalEquivocation, VoteEquivocation};
use gridshare_ledger::export::{ExportError, ExportReader, ExportWriter, FORMAT_VERSION, MAGIC};
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
    let original = audit_export(bytes.as_slice(), |_| ()).unwrap();
    assert!(original.passed());
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
                // The version relabelled as another this build reads (3 ^ 1
                // = 2): the file holds no record version 2 lacks, so it says
                // the same thing, and the same ledger is audited.
                Ok(report) if VERSION_AT.contains(&position) => {
                    assert_eq!(report, original, "byte {position} ^ {mask:#x}: another ledger")
                }
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

/// A hostile proposer's block registers a small-order account key (anyone
/// can sign for it), certified by a validator that did not check: execution
/// refuses the block and the audit finds it, naming the key.
#[test]
fn a_registered_key_of_small_order_is_found() {
    use gridshare_ledger::block::CommitCertificate;
    use gridshare_ledger::execute::{BlockError, Rejection, Signatures, build_block, execute};
    use gridshare_ledger::ids::{KeyError, PublicKey};
    use gridshare_ledger::tx::{SignedTx, Tx};

    let (community, mut chain) = trading_chain(9, 2, 3);
    let genesis = &community.genesis;
    let mut state = State::genesis(genesis);
    for certified in &chain {
        state = execute(genesis, &state, &certified.block, Signatures::Verify).unwrap().0;
    }
    let registrar = community.registrar.public();
    let nonce = state.registrar_nonces[&registrar] + 1;
    // The identity point: order 1.
    let mut identity = [0; 32];
    identity[0] = 1;
    let key = PublicKey(identity);
    let tx = Tx::RegisterAccount { registrar, nonce, account: key, credit_limit_nano: 0 };
    let signed = SignedTx::sign(tx, &community.registrar, &genesis.community_id);
    let time_ms = state.last_timestamp_ms + 1;
    let proposer = community.validator.public();
    // An honest builder leaves it out; the hostile proposer puts it in.
    let mut built =
        build_block(genesis, &state, vec![signed.clone()], time_ms, proposer, Signatures::Verify).unwrap();
    assert!(built.block.transactions.is_empty() && built.left_out.len() == 1);
    built.block.transactions = vec![signed];
    built.block.header.tx_root = gridshare_ledger::block::tx_root(&built.block.transactions);
    built.block.header.tx_count = 1;
    let error = execute(genesis, &state, &built.block, Signatures::Verify).unwrap_err();
    assert!(
        matches!(&error, BlockError::Inadmissible { index: 0, rejection, .. }
            if **rejection == Rejection::InvalidKey { key, reason: KeyError::SmallOrder }),
        "{error:?}"
    );
    let certificate = CommitCertificate::sign(&built.block.header, 0, &[&community.validator]);
    chain.push(CertifiedBlock { block: built.block, certificate });
    let height = chain.len() as u64;
    let report = audit_export(export(&community, &chain).as_slice(), |_| ()).unwrap();
    assert!(!report.passed());
    let finding = report.findings.iter().find(|f| f.message.contains("re-execution fails"));
    let finding = finding.unwrap_or_else(|| panic!("{:?}", report.findings));
    assert_eq!(finding.height, Some(height));
    assert!(
        finding.message.contains(&key.to_string()) && finding.message.contains("small order"),
        "{finding}"
    );
    assert_eq!(report.executed_height, height - 1);
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
fn equivocation(community: &TestCommunity) -> VoteEquivocation {
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
    VoteEquivocation {
        first,
        first_signature: key.sign(&first.signing_bytes(&id)),
        second,
        second_signature: key.sign(&second.signing_bytes(&id)),
    }
}

/// Two different proposals of the community's validator for one round.
fn double_proposal(community: &TestCommunity) -> ProposalEquivocation {
    use gridshare_ledger::consensus::Proposal;
    let key = &community.validator;
    let id = community.genesis.community_id;
    let proposal = |byte| Proposal {
        height: 2,
        round: 1,
        block_hash: gridshare_ledger::Hash([byte; 32]),
        pol_round: None,
        proposer: key.public(),
    };
    let (first, second) = (proposal(3), proposal(4));
    ProposalEquivocation {
        first,
        first_signature: key.sign(&first.signing_bytes(&id)),
        second,
        second_signature: key.sign(&second.signing_bytes(&id)),
    }
}

/// An export of `chain` followed by `evidence`.
fn export_with(community: &TestCommunity, chain: &[CertifiedBlock], evidence: &[Equivocation]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = ExportWriter::new(&mut bytes, &community.genesis).unwrap();
    for block in chain {
        writer.block(block).unwrap();
    }
    for evidence in evidence {
        writer.evidence(evidence).unwrap();
    }
    writer.finish().unwrap();
    bytes
}

/// Where an export's format version is.
const VERSION_AT: std::ops::Range<usize> = MAGIC.len()..MAGIC.len() + 2;

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
    let votes = equivocation(&community);
    let proposals = double_proposal(&community);
    store.record_equivocation(&Equivocation::Votes(votes)).unwrap();
    store.record_equivocation(&Equivocation::Proposals(proposals)).unwrap();
    store.record_equivocation(&Equivocation::Votes(votes)).unwrap();
    store.record_equivocation(&Equivocation::Proposals(proposals)).unwrap();
    drop(store);
    let store = gridshare_ledger::store::RedbStore::open(&path).unwrap();
    let both = vec![Equivocation::Votes(votes), Equivocation::Proposals(proposals)];
    assert_eq!(store.evidence().unwrap(), both, "each kept once, in order, across a reopen");

    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed() && report.equivocations == 2, "{report:?}");
    let mut bytes = Vec::new();
    gridshare_ledger::export::export_store(&store, &mut bytes).unwrap();
    let (mut reader, _) = ExportReader::open(bytes.as_slice()).unwrap();
    while reader.next_block().unwrap().is_some() {}
    assert_eq!(reader.evidence(), both.as_slice());
    assert_eq!(reader.version(), FORMAT_VERSION);
    let report = audit_export(bytes.as_slice(), |_| ()).unwrap();
    assert!(report.passed() && report.equivocations == 2, "{report:?}");

    // Evidence that does not hold is a finding, of either kind.
    let forged_votes = VoteEquivocation { second_signature: votes.first_signature, ..votes };
    let forged_proposals = ProposalEquivocation { second: proposals.first, ..proposals };
    for (forged, expected) in [
        (Equivocation::Votes(forged_votes), "vote equivocation evidence"),
        (Equivocation::Proposals(forged_proposals), "proposal equivocation evidence"),
    ] {
        let bytes = export_with(&community, &chain, &[forged, Equivocation::Votes(votes)]);
        let report = audit_export(bytes.as_slice(), |_| ()).unwrap();
        assert_eq!(report.equivocations, 1, "{report:?}");
        let finding = report.findings.iter().find(|f| f.object == "evidence").unwrap();
        assert!(finding.message.starts_with(expected), "{finding}");
        assert_eq!(finding.height, Some(forged.height()));
    }
}

/// Exports of the versions before proposal evidence are still read: a
/// version 2 file (what the build before wrote: vote evidence records of
/// kind 3 only) and a version 1 file (no evidence). A record of a kind its
/// version does not have is malformed.
#[test]
fn exports_of_earlier_versions_still_read_and_new_records_need_the_new_version() {
    let (community, chain) = trading_chain(14, 2, 3);
    let votes = equivocation(&community);
    let proposals = double_proposal(&community);
    let with_version = |mut bytes: Vec<u8>, version: u16| {
        bytes[VERSION_AT].copy_from_slice(&version.to_le_bytes());
        bytes
    };
    // Records as the build before wrote them: only the version differs.
    let version_2 = with_version(export_with(&community, &chain, &[Equivocation::Votes(votes)]), 2);
    let (mut reader, genesis) = ExportReader::open(version_2.as_slice()).unwrap();
    assert_eq!((genesis, reader.version()), (community.genesis.clone(), 2));
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block().unwrap() {
        blocks.push(block);
    }
    assert_eq!(blocks, chain);
    assert_eq!(reader.evidence(), [Equivocation::Votes(votes)]);
    let report = audit_export(version_2.as_slice(), |_| ()).unwrap();
    assert!(report.passed() && report.equivocations == 1, "{report:?}");

    let version_1 = with_version(export(&community, &chain), 1);
    let report = audit_export(version_1.as_slice(), |_| ()).unwrap();
    assert!(
        report.passed() && report.blocks == chain.len() as u64 && report.equivocations == 0,
        "{report:?}"
    );

    // Proposal evidence (kind 4) in a version 2 file, any evidence in a
    // version 1 file: malformed, and the audit says so.
    for (bytes, version) in [
        (export_with(&community, &chain, &[Equivocation::Proposals(proposals)]), 2),
        (export_with(&community, &chain, &[Equivocation::Votes(votes)]), 1),
    ] {
        let bytes = with_version(bytes, version);
        let (mut reader, _) = ExportReader::open(bytes.as_slice()).unwrap();
        let error = loop {
            match reader.next_block() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("version {version}: an evidence record its version lacks was read"),
                Err(error) => break error,
            }
        };
        assert!(error.to_string().contains(&format!("format version {version}, which has none")), "{error}");
        let report = audit_export(bytes.as_slice(), |_| ()).unwrap();
        assert!(!report.passed() && report.findings.iter().any(|f| f.object == "export"), "{report:?}");
    }
    // A version this build does not know is refused before anything is read.
    let future = with_version(export(&community, &chain), FORMAT_VERSION + 1);
    assert!(
        matches!(ExportReader::open(future.as_slice()), Err(ExportError::Version(v)) if v == FORMAT_VERSION + 1)
    );
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
