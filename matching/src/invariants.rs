//! An independent check of a clearing's economic invariants, for tests, the
//! fuzz target and anyone who wants to verify a result without trusting
//! [`clear`](crate::clear).

use std::collections::BTreeMap;

use crate::{Clearing, Mechanism, Order, Params, Side};

/// A broken invariant, described for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(Violation(format!($($message)+)));
        }
    };
}

/// Checks that `clearing` is a valid result for `orders` under `params`:
/// - one fill per order, in ascending id order, never above the order;
/// - Σ buy fills = Σ sell fills = Σ trades = volume, and each order's trades
///   add up to its fill;
/// - no trade violates either side's limit price (bids net of the fee);
/// - within every price level of a side, each fill is the level's filled
///   volume shared pro rata by energy to within less than 1 Wh;
/// - uniform price: every trade is at the clearing price, bids above and asks
///   below it fill completely, bids below and asks above it do not trade.
///
/// It does not check that the volume is the maximum; that takes a search.
pub fn check<Id: Ord + std::fmt::Debug>(
    orders: &[Order<Id>],
    params: &Params,
    clearing: &Clearing<Id>,
) -> Result<(), Violation> {
    let fee = params.network_fee_micro_per_kwh;
    let by_id: BTreeMap<&Id, &Order<Id>> = orders.iter().map(|order| (&order.id, order)).collect();
    ensure!(by_id.len() == orders.len(), "the input has duplicate ids");
    ensure!(clearing.mechanism == params.mechanism, "mechanism differs from the parameters");
    ensure!(
        clearing.fills.len() == orders.len(),
        "{} fills for {} orders",
        clearing.fills.len(),
        orders.len()
    );
    ensure!(
        clearing.fills.windows(2).all(|pair| pair[0].id < pair[1].id),
        "fills are not in strictly ascending id order"
    );

    let mut fill_of: BTreeMap<&Id, u64> = BTreeMap::new();
    let mut filled_wh = [0_u128; 2];
    for fill in &clearing.fills {
        let Some(order) = by_id.get(&fill.id) else {
            return Err(Violation(format!("fill for unknown order {:?}", fill.id)));
        };
        ensure!(fill.side == order.side, "fill of {:?} has the wrong side", fill.id);
        ensure!(fill.filled_wh <= order.energy_wh, "order {:?} is overfilled", fill.id);
        if order.side == Side::Buy && order.price_micro_per_kwh < fee {
            ensure!(fill.filled_wh == 0, "bid {:?} below the fee trades", fill.id);
        }
        filled_wh[order.side as usize] += u128::from(fill.filled_wh);
        fill_of.insert(&fill.id, fill.filled_wh);
    }
    let volume_wh = u128::from(clearing.volume_wh);
    ensure!(
        filled_wh[Side::Buy as usize] == volume_wh && filled_wh[Side::Sell as usize] == volume_wh,
        "buy fills {} Wh, sell fills {} Wh, volume {} Wh",
        filled_wh[0],
        filled_wh[1],
        volume_wh
    );
    ensure!(
        clearing.clearing_price_micro_per_kwh.is_some()
            == (params.mechanism == Mechanism::Uniform && clearing.volume_wh > 0),
        "a clearing price exists exactly for a uniform auction that trades"
    );

    let mut traded_wh: BTreeMap<&Id, u128> = BTreeMap::new();
    for trade in &clearing.trades {
        let (Some(buy_fill), Some(sell_fill)) =
            (clearing.fills.get(trade.buy), clearing.fills.get(trade.sell))
        else {
            return Err(Violation(format!("trade {trade:?} names a fill that does not exist")));
        };
        let (buy, sell) = (by_id[&buy_fill.id], by_id[&sell_fill.id]);
        ensure!(buy.side == Side::Buy && sell.side == Side::Sell, "trade {trade:?} pairs the wrong sides");
        ensure!(trade.energy_wh > 0, "trade {trade:?} is empty");
        let effective_bid = buy.price_micro_per_kwh.saturating_sub(fee);
        ensure!(
            sell.price_micro_per_kwh <= trade.price_micro_per_kwh
                && trade.price_micro_per_kwh <= effective_bid,
            "trade {trade:?} violates a limit price"
        );
        if let Some(price) = clearing.clearing_price_micro_per_kwh {
            ensure!(trade.price_micro_per_kwh == price, "trade {trade:?} is not at the clearing price");
        }
        *traded_wh.entry(&buy.id).or_default() += u128::from(trade.energy_wh);
        *traded_wh.entry(&sell.id).or_default() += u128::from(trade.energy_wh);
    }
    for (id, filled) in &fill_of {
        let traded = traded_wh.get(id).copied().unwrap_or(0);
        ensure!(traded == u128::from(*filled), "order {id:?} fills {filled} Wh but trades {traded} Wh");
    }

    // Pro rata within every level: |fill × E − v × e| < E.
    let mut levels: BTreeMap<(Side, u64), (u128, u128)> = BTreeMap::new();
    for order in orders {
        let level = levels.entry((order.side, order.price_micro_per_kwh)).or_default();
        level.0 += u128::from(order.energy_wh);
        level.1 += u128::from(fill_of[&order.id]);
    }
    for order in orders {
        let (level_energy, level_filled) = levels[&(order.side, order.price_micro_per_kwh)];
        let fair = level_filled * u128::from(order.energy_wh);
        let given = u128::from(fill_of[&order.id]) * level_energy;
        ensure!(
            fair.abs_diff(given) < level_energy,
            "order {:?} gets {} Wh, not its pro rata share of its level",
            order.id,
            fill_of[&order.id]
        );
    }

    if let Some(price) = clearing.clearing_price_micro_per_kwh {
        for order in orders {
            let filled = fill_of[&order.id];
            let (better, worse) = match order.side {
                Side::Buy => {
                    let effective = order.price_micro_per_kwh.checked_sub(fee);
                    (effective.is_some_and(|p| p > price), effective.is_none_or(|p| p < price))
                }
                Side::Sell => (order.price_micro_per_kwh < price, order.price_micro_per_kwh > price),
            };
            ensure!(
                !better || filled == order.energy_wh,
                "order {:?} beats the price but is not filled",
                order.id
            );
            ensure!(
                !worse || filled == 0,
                "order {:?} is on the wrong side of the price but trades",
                order.id
            );
        }
    }
    Ok(())
}
