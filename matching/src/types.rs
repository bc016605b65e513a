//! The auction's input (orders, parameters, bounds) and output (the clearing).

/// Which way an order trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// A bid: the household wants to import energy.
    Buy,
    /// An ask: the household offers energy it will export.
    Sell,
}

impl Side {
    /// The lower-case name used in files and JSON: `buy` or `sell`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// One order of the book. `Id` is anything totally ordered: ties between
/// orders are broken by ascending id, so the id's `Ord` is part of the rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Order<Id> {
    pub id: Id,
    pub side: Side,
    /// Energy to buy or sell in the interval, in Wh. Must be positive.
    pub energy_wh: u64,
    /// Limit price in micro-currency per kWh: the most a buyer pays (network
    /// fee included) or the least a seller accepts.
    pub price_micro_per_kwh: u64,
}

/// How trades are priced. Both mechanisms produce the same fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// Pay-as-clear: every trade at one clearing price chosen by `k`.
    Uniform,
    /// Pay-as-bid: each trade at the buyer's effective price.
    PayAsBid,
}

impl Mechanism {
    /// The name used in files and JSON: `uniform` or `pay-as-bid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Uniform => "uniform",
            Mechanism::PayAsBid => "pay-as-bid",
        }
    }
}

/// Bounds on the input. Orders beyond them are rejected with a typed error,
/// which keeps every sum inside `u64` and every product inside `u128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    pub max_orders: usize,
    pub max_energy_wh: u64,
    pub max_price_micro_per_kwh: u64,
}

impl Limits {
    /// Enough for a million orders in one interval.
    pub const MAX_ORDERS_DEFAULT: usize = 1 << 21;
    /// 1 GWh in one order: far above any metering point of a community.
    pub const MAX_ENERGY_WH_DEFAULT: u64 = 1_000_000_000;
    /// 1,000,000 currency units per kWh.
    pub const MAX_PRICE_MICRO_PER_KWH_DEFAULT: u64 = 1_000_000_000_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_orders: Self::MAX_ORDERS_DEFAULT,
            max_energy_wh: Self::MAX_ENERGY_WH_DEFAULT,
            max_price_micro_per_kwh: Self::MAX_PRICE_MICRO_PER_KWH_DEFAULT,
        }
    }
}

/// Everything besides the orders that decides a clearing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    pub mechanism: Mechanism,
    /// Where in the interval of clearing prices the uniform price lies, in
    /// thousandths: 0 picks the lowest (best for buyers), 1000 the highest
    /// (best for sellers). Ignored by pay-as-bid.
    pub k_thousandths: u16,
    /// Network fee in micro-currency per kWh. A bid's effective price is its
    /// limit minus this fee; a bid below the fee cannot trade.
    pub network_fee_micro_per_kwh: u64,
    pub limits: Limits,
}

impl Params {
    /// The largest valid `k_thousandths`.
    pub const K_THOUSANDTHS_MAX: u16 = 1000;

    /// Uniform price with the given `k`, no fee and the default limits.
    pub fn uniform(k_thousandths: u16) -> Self {
        Params {
            mechanism: Mechanism::Uniform,
            k_thousandths,
            network_fee_micro_per_kwh: 0,
            limits: Limits::default(),
        }
    }

    /// Pay-as-bid with no fee and the default limits.
    pub fn pay_as_bid() -> Self {
        Params { mechanism: Mechanism::PayAsBid, ..Params::uniform(500) }
    }

    /// The same parameters with a network fee.
    pub fn with_network_fee(self, network_fee_micro_per_kwh: u64) -> Self {
        Params { network_fee_micro_per_kwh, ..self }
    }
}

/// How much of one order was filled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fill<Id> {
    pub id: Id,
    pub side: Side,
    pub filled_wh: u64,
}

/// Energy moving from one seller to one buyer at one price. The two orders
/// are named by their index in [`Clearing::fills`], which lists every order in
/// ascending id order: compact, and no id is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Trade {
    /// Index of the buy order in [`Clearing::fills`].
    pub buy: usize,
    /// Index of the sell order in [`Clearing::fills`].
    pub sell: usize,
    pub energy_wh: u64,
    /// What the seller receives per kWh. The buyer pays this plus the fee.
    pub price_micro_per_kwh: u64,
}

/// The result of clearing one book.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Clearing<Id> {
    pub mechanism: Mechanism,
    /// The uniform price; `None` for pay-as-bid and when nothing trades.
    pub clearing_price_micro_per_kwh: Option<u64>,
    /// Energy traded, equal to the sum of buy fills, of sell fills and of trades.
    pub volume_wh: u64,
    /// Every order of the input, filled or not, in ascending id order.
    pub fills: Vec<Fill<Id>>,
    /// Bilateral trades in pairing order (see `docs/AUCTION.md`).
    pub trades: Vec<Trade>,
}

impl<Id> Clearing<Id> {
    /// The ids of a trade's buy and sell orders.
    pub fn trade_ids(&self, trade: &Trade) -> (&Id, &Id) {
        (&self.fills[trade.buy].id, &self.fills[trade.sell].id)
    }
}
