//! `GET /v1/accounts/{key}`, `/v1/nonces/{key}`, `/v1/meters/{key}` and
//! `/v1/offers`.

use axum::extract::{Path, RawQuery, State};
use gridshare_api::{Account, ErrorCode, Meter, Nonce, Offer, Offers, OffersQuery};
use gridshare_ledger::Hash;
use gridshare_ledger::ids::PublicKey;

use super::{ApiError, LIST_MAX, Reply, json, parse_key, parse_u64, query, read};
use crate::node::Client;

pub(super) async fn account(State(client): State<Client>, Path(key): Path<String>) -> Reply {
    json(&account_of(&client, parse_key(&key)?).await?)
}

/// An account with its meters (up to `LIST_MAX`).
pub(super) async fn account_of(client: &Client, key: PublicKey) -> Result<Account, ApiError> {
    read(client, move |view| {
        let account = view.state.accounts.get(&key).ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownAccount, format!("account {key} is not registered"))
        })?;
        let meters: Vec<Meter> = view
            .state
            .meters
            .iter()
            .filter(|(_, meter)| meter.owner == key)
            .take(LIST_MAX)
            .map(|(id, meter)| Meter::of(*id, meter))
            .collect();
        Ok(Account::of(key, account, &view.genesis.currency, meters))
    })
    .await
}

pub(super) async fn nonce(State(client): State<Client>, Path(key): Path<String>) -> Reply {
    let key = parse_key(&key)?;
    let nonce = read(&client, move |view| {
        // Waiting transactions count: a wallet's next nonce follows them.
        let pending = view.mempool.pending();
        let last_nonce = match pending.accounts.get(&key) {
            Some(account) => account.last_nonce,
            None if view.genesis.is_registrar(&key) || view.genesis.is_dso(&key) => {
                pending.registrar_nonces.get(&key).copied().unwrap_or(0)
            }
            None => {
                return Err(ApiError::new(
                    ErrorCode::UnknownKey,
                    format!("{key} is neither an account, a registrar nor a DSO"),
                ));
            }
        };
        Ok(Nonce { key, last_nonce })
    })
    .await?;
    json(&nonce)
}

pub(super) async fn meter(State(client): State<Client>, Path(key): Path<String>) -> Reply {
    let key = parse_key(&key)?;
    let meter = read(&client, move |view| {
        if let Some(meter) = view.state.meters.get(&key) {
            return Ok(Meter::of(key, meter));
        }
        let zone_meter = view.state.zone_meters.get(&key).ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownMeter, format!("meter {key} is not registered"))
        })?;
        let zone = view.genesis.zones.get(zone_meter.zone as usize).map_or("", |zone| zone.name.as_str());
        Ok(Meter::of_zone(key, zone_meter, zone))
    })
    .await?;
    json(&meter)
}

/// `GET /v1/offers?account=KEY&interval=N`: open offers, ascending by
/// interval then id.
pub(super) async fn offers(State(client): State<Client>, RawQuery(raw): RawQuery) -> Reply {
    let parameters = query(raw, &OffersQuery::PARAMETERS)?;
    let filter = OffersQuery {
        account: parameters.get("account").map(|text| parse_key(text)).transpose()?,
        interval: parameters.get("interval").map(|text| parse_u64("interval", text)).transpose()?,
    };
    json(&offers_of(&client, filter).await?)
}

/// The open offers `filter` selects (up to `LIST_MAX`), ascending by
/// interval then id.
pub(super) async fn offers_of(client: &Client, filter: OffersQuery) -> Result<Offers, ApiError> {
    read(client, move |view| {
        let state = view.state;
        let ids: Box<dyn Iterator<Item = &Hash>> = match filter.interval {
            Some(interval) => Box::new(
                state
                    .offers_by_interval
                    .range((interval, Hash([0; 32]))..=(interval, Hash([0xff; 32])))
                    .map(|(_, id)| id),
            ),
            None => Box::new(state.offers_by_interval.iter().map(|(_, id)| id)),
        };
        let offers = ids
            .filter_map(|id| state.offers.get(id).map(|offer| (id, offer)))
            .filter(|(_, offer)| filter.account.is_none_or(|account| offer.account == account))
            .take(LIST_MAX)
            .map(|(id, offer)| Offer::of(*id, offer, view.genesis))
            .collect();
        Ok(Offers { offers })
    })
    .await
}
