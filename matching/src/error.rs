//! Why a book or its parameters were rejected.

/// Bad input to [`clear`](crate::clear) or [`clear_zonal`](crate::clear_zonal). Positions are indexes into the
/// order list as it was passed in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClearError {
    /// `k_thousandths` above 1000.
    KOutOfRange {
        k_thousandths: u16,
    },
    /// The network fee is above the price bound.
    FeeAboveMax {
        network_fee_micro_per_kwh: u64,
        max_price_micro_per_kwh: u64,
    },
    /// The limits themselves would let sums overflow.
    LimitsTooLarge {
        max_orders: usize,
        max_energy_wh: u64,
    },
    TooManyOrders {
        count: usize,
        max_orders: usize,
    },
    ZeroEnergy {
        position: usize,
    },
    EnergyAboveMax {
        position: usize,
        energy_wh: u64,
        max_energy_wh: u64,
    },
    PriceAboveMax {
        position: usize,
        price_micro_per_kwh: u64,
        max_price_micro_per_kwh: u64,
    },
    /// Two orders share an id; ties could not be broken.
    DuplicateId,
    /// More zones than [`ZONES_MAX`](crate::ZONES_MAX).
    TooManyZones {
        count: usize,
        max_zones: usize,
    },
    /// An order names a zone beyond the zone list.
    UnknownZone {
        position: usize,
        zone: u32,
        zones: usize,
    },
}

impl std::fmt::Display for ClearError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClearError::KOutOfRange { k_thousandths } => {
                write!(f, "k must be between 0 and 1000 thousandths, got {k_thousandths}")
            }
            ClearError::FeeAboveMax { network_fee_micro_per_kwh, max_price_micro_per_kwh } => write!(
                f,
                "network fee of {network_fee_micro_per_kwh} micro/kWh is above the price bound of {max_price_micro_per_kwh}"
            ),
            ClearError::LimitsTooLarge { max_orders, max_energy_wh } => write!(
                f,
                "limits of {max_orders} orders of up to {max_energy_wh} Wh could overflow a 64-bit energy sum"
            ),
            ClearError::TooManyOrders { count, max_orders } => {
                write!(f, "{count} orders is more than the bound of {max_orders}")
            }
            ClearError::ZeroEnergy { position } => {
                write!(f, "order at position {position} has zero energy")
            }
            ClearError::EnergyAboveMax { position, energy_wh, max_energy_wh } => write!(
                f,
                "order at position {position} has {energy_wh} Wh, above the bound of {max_energy_wh} Wh"
            ),
            ClearError::PriceAboveMax { position, price_micro_per_kwh, max_price_micro_per_kwh } => write!(
                f,
                "order at position {position} has a price of {price_micro_per_kwh} micro/kWh, above the bound of {max_price_micro_per_kwh}"
            ),
            ClearError::DuplicateId => write!(f, "two orders share an id"),
            ClearError::TooManyZones { count, max_zones } => {
                write!(f, "{count} zones is more than the bound of {max_zones}")
            }
            ClearError::UnknownZone { position, zone, zones } => {
                write!(f, "order at position {position} is in zone {zone}, but there are only {zones} zones")
            }
        }
    }
}

impl std::error::Error for ClearError {}
