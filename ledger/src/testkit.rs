//! A local community for tests and the node's dev mode: deterministic keys,
//! a genesis, registration transactions, and a single local validator that
//! produces blocks and signs their commit certificates.

use crate::block::{CertifiedBlock, CommitCertificate};
use crate::execute::{BlockError, BuiltBlock, Signatures, build_block};
use crate::genesis::{Genesis, MarketParams, Mechanism, Tariffs, Validator, Zone, ZoneLimits};
use crate::ids::{CommunityId, Keypair};
use crate::state::State;
use crate::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};
use crate::{MICROS_PER_UNIT, NANOS_PER_UNIT};

/// One household: an account key and one meter.
#[derive(Debug)]
pub struct Household {
    pub account: Keypair,
    pub meter: Keypair,
}

/// A community with one validator, one registrar and some households, all
/// keys derived from a seed.
#[derive(Debug)]
pub struct TestCommunity {
    pub genesis: Genesis,
    pub registrar: Keypair,
    pub validator: Keypair,
    /// The community's DSO, listed in its genesis.
    pub dso: Keypair,
    pub households: Vec<Household>,
    next_registrar_nonce: u64,
}

/// The key derived from `seed` for `role` and `index`.
pub fn derived_key(seed: u64, role: u8, index: u32) -> Keypair {
    let mut bytes = [0_u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = role;
    bytes[9..13].copy_from_slice(&index.to_le_bytes());
    Keypair::from_seed(*blake3::hash(&bytes).as_bytes())
}

/// Market parameters for tests: 1-second intervals, gate closure 500 ms
/// before the start, settlement 1.5 s after the end, prices 0 to 1 per kWh,
/// meters 5 % over their power, clocks within 2 s.
pub fn test_market() -> MarketParams {
    MarketParams {
        interval_length_ms: 1_000,
        gate_closure_lead_ms: 500,
        settlement_delay_ms: 1_500,
        offer_horizon_intervals: 100,
        attestation_max_age_intervals: 10,
        price_floor_micro_per_kwh: 0,
        price_cap_micro_per_kwh: MICROS_PER_UNIT,
        mechanism: Mechanism::Uniform,
        k_thousandths: 500,
        max_open_offers_per_account: 16,
        max_offers_per_interval: 16_384,
        max_transactions_per_block: 100_000,
        meter_tolerance_permille: 50,
        block_time_tolerance_ms: 2_000,
    }
}

impl TestCommunity {
    /// A community of `households` households with `market` rules, starting
    /// at `genesis_time_ms`.
    pub fn new(seed: u64, households: u32, market: MarketParams, genesis_time_ms: u64) -> TestCommunity {
        let registrar = derived_key(seed, 1, 0);
        let validator = derived_key(seed, 2, 0);
        let dso = derived_key(seed, 5, 0);
        let genesis = Genesis {
            community_id: CommunityId(*blake3::hash(&seed.to_le_bytes()).as_bytes()),
            name: "Test community".to_string(),
            currency: "EUR".to_string(),
            genesis_time_ms,
            market,
            tariffs: Tariffs {
                effective_from_interval: 0,
                grid_import_micro_per_kwh: 300_000,
                grid_feed_in_micro_per_kwh: 80_000,
                network_fee_micro_per_kwh: 20_000,
            },
            validators: vec![Validator { key: validator.public(), voting_power: 1 }],
            registrars: vec![registrar.public()],
            zones: vec![Zone { name: "main".to_string(), limits: ZoneLimits::OPEN }],
            dsos: vec![dso.public()],
        };
        let households = (0..households)
            .map(|index| Household {
                account: derived_key(seed, 3, index),
                meter: derived_key(seed, 4, index),
            })
            .collect();
        TestCommunity { genesis, registrar, validator, dso, households, next_registrar_nonce: 1 }
    }

    /// Signs `tx` with the registrar's key and the next registrar nonce.
    pub fn registrar_tx(&mut self, tx: impl FnOnce(crate::ids::PublicKey, u64) -> Tx) -> SignedTx {
        let nonce = self.next_registrar_nonce;
        self.next_registrar_nonce += 1;
        SignedTx::sign(tx(self.registrar.public(), nonce), &self.registrar, &self.genesis.community_id)
    }

    /// Registers every household with a 7 kW meter both ways, household `i`
    /// in zone `i mod zones`, and credits it 100 currency units.
    pub fn registrations(&mut self) -> Vec<SignedTx> {
        let mut txs = Vec::new();
        let keys: Vec<_> = self.households.iter().map(|h| (h.account.public(), h.meter.public())).collect();
        for (index, (account, meter)) in keys.into_iter().enumerate() {
            let zone = self.genesis.zones[index % self.genesis.zones.len()].name.clone();
            txs.push(self.registrar_tx(|registrar, nonce| Tx::RegisterAccount {
                registrar,
                nonce,
                account,
                credit_limit_nano: 0,
            }));
            txs.push(self.registrar_tx(|registrar, nonce| Tx::RegisterMeter {
                registrar,
                nonce,
                meter,
                owner: account,
                max_import_w: 7_000_000,
                max_export_w: 7_000_000,
                zone,
            }));
            txs.push(self.registrar_tx(|registrar, nonce| Tx::Credit {
                registrar,
                nonce,
                account,
                amount_nano: 100 * NANOS_PER_UNIT,
                reference: "initial deposit".to_string(),
            }));
        }
        txs
    }

    /// Household `index`'s meter reading, signed by the meter.
    pub fn reading(
        &self,
        index: usize,
        interval: u64,
        import_wh_total: u64,
        export_wh_total: u64,
    ) -> SignedMeterReading {
        let meter = &self.households[index].meter;
        let reading = MeterReading { meter: meter.public(), interval, import_wh_total, export_wh_total };
        SignedMeterReading::sign(reading, meter, &self.genesis.community_id)
    }

    /// A meter-reading transaction.
    pub fn reading_tx(
        &self,
        index: usize,
        interval: u64,
        import_wh_total: u64,
        export_wh_total: u64,
    ) -> SignedTx {
        let signed = self.reading(index, interval, import_wh_total, export_wh_total);
        SignedTx { tx: Tx::MeterReading(signed.reading), signature: signed.signature }
    }

    /// An offer by household `index`, attested by `attestation`.
    #[allow(clippy::too_many_arguments)]
    pub fn offer_tx(
        &self,
        index: usize,
        nonce: u64,
        interval: u64,
        side: Side,
        energy_wh: u64,
        price_micro_per_kwh: u64,
        attestation: SignedMeterReading,
    ) -> SignedTx {
        let account = &self.households[index].account;
        let offer = Offer {
            account: account.public(),
            nonce,
            interval,
            side,
            energy_wh,
            price_micro_per_kwh,
            attestation,
        };
        SignedTx::sign(Tx::Offer(offer), account, &self.genesis.community_id)
    }
}

/// A validator that alone holds more than two thirds of the voting power:
/// it builds, executes and certifies blocks by itself.
#[derive(Debug)]
pub struct LocalValidator {
    pub keypair: Keypair,
}

impl LocalValidator {
    /// Builds the next block from `candidates` at `timestamp_ms` and signs
    /// its certificate. Signatures are verified here.
    pub fn produce(
        &self,
        genesis: &Genesis,
        state: &State,
        candidates: Vec<SignedTx>,
        timestamp_ms: u64,
    ) -> Result<(CertifiedBlock, BuiltBlock), BlockError> {
        let built =
            build_block(genesis, state, candidates, timestamp_ms, self.keypair.public(), Signatures::Verify)?;
        let certificate = CommitCertificate::sign(&built.block.header, 0, &[&self.keypair]);
        Ok((CertifiedBlock { block: built.block.clone(), certificate }, built))
    }
}

/// splitmix64: deterministic pseudo-random numbers without a dependency.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// A chain in which `households` households read their meters every
/// interval and trade (even households sell, odd ones buy) in every interval,
/// over `blocks` blocks two per interval: clearings and settlements included.
/// Deterministic for a seed.
pub fn trading_chain(seed: u64, households: u32, blocks: u64) -> (TestCommunity, Vec<CertifiedBlock>) {
    const T0: u64 = 1_000_000;
    let mut community = TestCommunity::new(seed, households, test_market(), T0);
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let mut random = SplitMix64(seed);
    let mut state = State::genesis(&community.genesis);
    let mut chain = Vec::new();
    let count = usize::try_from(households).unwrap_or(usize::MAX);
    let mut registers = vec![(0_u64, 0_u64); count];
    let mut nonces = vec![0_u64; count];
    let mut last_read: Option<u64> = None;
    let mut last_offered: Option<u64> = None;
    let mut candidates = community.registrations();
    for index in 0..=blocks {
        let time_ms = T0 + 100 + 500 * index;
        let (certified, built) = validator
            .produce(&community.genesis, &state, std::mem::take(&mut candidates), time_ms)
            .expect("the trading chain is valid");
        assert!(built.left_out.is_empty(), "trading chain left out {:?}", built.left_out);
        state = built.state;
        chain.push(certified);

        // Transactions for the next block, at its time.
        let next_ms = time_ms + 500;
        let genesis = &community.genesis;
        let ended = (next_ms - T0) / genesis.market.interval_length_ms;
        if ended > 0 && last_read != Some(ended - 1) {
            let interval = ended - 1;
            for (h, register) in registers.iter_mut().enumerate() {
                register.0 += random.between(0, 400);
                register.1 += random.between(0, 400);
                candidates.push(community.reading_tx(h, interval, register.0, register.1));
            }
            last_read = Some(interval);
        }
        let target = genesis.interval_at(next_ms) + 2;
        if let Some(read) = last_read
            && last_offered != Some(target)
        {
            for (h, nonce) in nonces.iter_mut().enumerate() {
                *nonce += 1;
                let side = if h % 2 == 0 { Side::Sell } else { Side::Buy };
                let (import, export) = registers[h];
                let attestation = community.reading(h, read, import, export);
                let energy_wh = random.between(100, 1_500);
                let price = random.between(50_000, 400_000);
                candidates.push(community.offer_tx(h, *nonce, target, side, energy_wh, price, attestation));
            }
            last_offered = Some(target);
        }
    }
    (community, chain)
}
