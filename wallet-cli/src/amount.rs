//! Exact conversion between the decimals people type ("2.5" kWh, "0.11" per
//! kWh) and the integers the protocol uses (Wh, micro-currency per kWh).
//! Input with more precision than the unit is refused, never rounded.

use gridshare_api::decimal::{self, DecimalError};
pub use gridshare_api::decimal::{
    format_kw, format_kwh, format_money, format_price, format_scaled, format_signed_kwh,
};

/// Decimal places of each unit relative to what people type.
pub mod scale {
    /// kWh typed, Wh stored.
    pub const KWH_TO_WH: u32 = 3;
    /// Currency per kWh typed, micro-currency per kWh stored.
    pub const CURRENCY_TO_MICRO: u32 = 6;
    /// A fraction in [0, 1] typed, thousandths stored.
    pub const FRACTION_TO_THOUSANDTHS: u32 = 3;
}

/// Why a typed amount was refused, with what was typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{text}` is not a decimal number")]
    NotANumber { text: String },
    #[error("`{text}` has more than {decimals} decimal places")]
    TooPrecise { text: String, decimals: u32 },
    #[error("`{text}` is negative")]
    Negative { text: String },
    #[error("`{text}` is too large")]
    TooLarge { text: String },
}

/// Parses a non-negative decimal with at most `decimals` places into the
/// integer `value × 10^decimals`, exactly (`gridshare_api::decimal`):
/// `"2.5"` with 3 places is `2500`; `"2.5000"` is accepted (its value has
/// one place), `"2.5001"` is not.
pub fn parse_scaled(text: &str, decimals: u32) -> Result<u64, AmountError> {
    let text_owned = || text.to_string();
    decimal::parse_scaled(text, decimals).map_err(|error| match error {
        DecimalError::NotANumber => AmountError::NotANumber { text: text_owned() },
        DecimalError::TooPrecise { decimals } => AmountError::TooPrecise { text: text_owned(), decimals },
        DecimalError::Negative => AmountError::Negative { text: text_owned() },
        DecimalError::TooLarge => AmountError::TooLarge { text: text_owned() },
    })
}

/// Why a typed fraction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FractionError {
    #[error(transparent)]
    Amount(#[from] AmountError),
    #[error("`{text}` is not between 0 and 1")]
    OutOfRange { text: String },
}

/// Parses a fraction in [0, 1] with at most 3 decimals (`0.5`) into
/// thousandths.
pub fn parse_fraction_thousandths(text: &str) -> Result<u16, FractionError> {
    let thousandths = parse_scaled(text, scale::FRACTION_TO_THOUSANDTHS)?;
    u16::try_from(thousandths)
        .ok()
        .filter(|&thousandths| thousandths <= 1_000)
        .ok_or_else(|| FractionError::OutOfRange { text: text.to_string() })
}

/// Decimal places of a power typed in kW, stored in W.
const KW_TO_W: u32 = 3;
/// Decimal places of money typed in currency units, stored in nano-currency.
const CURRENCY_TO_NANO: u32 = 9;

/// An amount with a unit that was refused, said the way people read it:
/// ``bad amount `2.5kwhh`: the unit must be kWh or Wh ...``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad amount `{text}`: {reason}")]
pub struct BadAmount {
    pub text: String,
    pub reason: String,
}

impl BadAmount {
    fn new(text: &str, reason: impl Into<String>) -> BadAmount {
        BadAmount { text: text.to_string(), reason: reason.into() }
    }

    fn of(text: &str, error: &AmountError, unit: &str) -> BadAmount {
        let reason = match error {
            AmountError::NotANumber { .. } => format!("not a decimal number of {unit}"),
            AmountError::TooPrecise { decimals: 0, .. } => format!("{unit} are whole numbers"),
            AmountError::TooPrecise { decimals, .. } => {
                format!("{unit} have at most {decimals} decimal places")
            }
            AmountError::Negative { .. } => "it must not be negative".to_string(),
            AmountError::TooLarge { .. } => "it is too large".to_string(),
        };
        BadAmount::new(text, reason)
    }
}

/// Splits `2.5kWh` into `("2.5", "kWh")`: the number is the leading digits,
/// points and minus signs, the unit what follows (spaces between allowed).
fn split_unit(text: &str) -> (&str, &str) {
    let trimmed = text.trim();
    let end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(end);
    (number, unit.trim())
}

/// Parses an energy: `2.5kWh`, `2500Wh` or a plain `2.5` (kWh), into Wh.
/// Units are case-insensitive; kWh have at most 3 decimals, Wh none.
pub fn parse_energy_wh(text: &str) -> Result<u64, BadAmount> {
    let (number, unit) = split_unit(text);
    let (decimals, unit_name) = match unit.to_ascii_lowercase().as_str() {
        "" | "kwh" => (scale::KWH_TO_WH, "kWh"),
        "wh" => (0, "Wh"),
        _ => {
            return Err(BadAmount::new(
                text,
                "the unit must be kWh or Wh, e.g. 2.5kWh, 2500Wh, or 2.5 for kWh",
            ));
        }
    };
    parse_scaled(number, decimals).map_err(|error| BadAmount::of(text, &error, unit_name))
}

/// Parses a power: `7.4kW`, `7400W` or a plain `7.4` (kW), into W.
pub fn parse_power_w(text: &str) -> Result<u64, BadAmount> {
    let (number, unit) = split_unit(text);
    let (decimals, unit_name) = match unit.to_ascii_lowercase().as_str() {
        "" | "kw" => (KW_TO_W, "kW"),
        "w" => (0, "W"),
        _ => return Err(BadAmount::new(text, "the unit must be kW or W, e.g. 7.4kW, 7400W, or 7.4 for kW")),
    };
    parse_scaled(number, decimals).map_err(|error| BadAmount::of(text, &error, unit_name))
}

/// Parses a price in currency per kWh (`0.11`, at most 6 decimals) into
/// micro-currency per kWh. A trailing `/kWh` or `EUR/kWh` is allowed.
pub fn parse_price_micro_per_kwh(text: &str) -> Result<u64, BadAmount> {
    let (number, unit) = split_unit(text);
    let unit_ok = unit.is_empty()
        || unit.eq_ignore_ascii_case("/kwh")
        || unit.split_once('/').is_some_and(|(currency, per)| {
            currency.len() == 3
                && currency.bytes().all(|b| b.is_ascii_alphabetic())
                && per.eq_ignore_ascii_case("kwh")
        });
    if !unit_ok {
        return Err(BadAmount::new(text, "a price is currency per kWh, e.g. 0.11"));
    }
    parse_scaled(number, scale::CURRENCY_TO_MICRO)
        .map_err(|error| BadAmount::of(text, &error, "prices per kWh"))
}

/// An amount of money as typed: nano-currency, and the currency code if one
/// was written after the number (`12.50 EUR`), to be checked against the
/// community's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub nano: i128,
    pub currency: Option<String>,
}

/// Parses money: a non-negative decimal with at most 9 places, optionally
/// followed by a three-letter currency code: `50`, `12.5 EUR`.
pub fn parse_money(text: &str) -> Result<Money, BadAmount> {
    let (number, unit) = split_unit(text);
    let currency = match unit {
        "" => None,
        code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(code.to_ascii_uppercase())
        }
        _ => {
            return Err(BadAmount::new(
                text,
                "money is a decimal amount of the currency, e.g. 12.50 or 12.50EUR",
            ));
        }
    };
    let nano = parse_scaled(number, CURRENCY_TO_NANO)
        .map_err(|error| BadAmount::of(text, &error, "currency units"))?;
    Ok(Money { nano: i128::from(nano), currency })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arithmetic is `gridshare_api::decimal`'s, tested there; here,
    /// each refusal names what was typed.
    #[test]
    fn refusals_name_what_was_typed() {
        assert_eq!(parse_scaled("2.5", 3), Ok(2_500));
        assert_eq!(format_scaled(2_500, 3), "2.500");
        let text = |text: &str| text.to_string();
        assert_eq!(
            parse_scaled("2.5001", 3),
            Err(AmountError::TooPrecise { text: text("2.5001"), decimals: 3 })
        );
        assert_eq!(parse_scaled("-1", 3), Err(AmountError::Negative { text: text("-1") }));
        assert_eq!(parse_scaled("1e3", 3), Err(AmountError::NotANumber { text: text("1e3") }));
        let large = "18446744073709551.616";
        assert_eq!(parse_scaled(large, 3), Err(AmountError::TooLarge { text: text(large) }));
        assert_eq!(
            parse_scaled("2.5001", 3).unwrap_err().to_string(),
            "`2.5001` has more than 3 decimal places"
        );
    }

    #[test]
    fn energies_with_units() {
        assert_eq!(parse_energy_wh("2.5kWh"), Ok(2_500));
        assert_eq!(parse_energy_wh("2.5 kwh"), Ok(2_500));
        assert_eq!(parse_energy_wh("2500Wh"), Ok(2_500));
        assert_eq!(parse_energy_wh("2.5"), Ok(2_500));
        assert_eq!(parse_energy_wh("0.001"), Ok(1));
        let typo = parse_energy_wh("2.5kwhh").unwrap_err().to_string();
        assert_eq!(
            typo,
            "bad amount `2.5kwhh`: the unit must be kWh or Wh, e.g. 2.5kWh, 2500Wh, or 2.5 for kWh"
        );
        assert_eq!(
            parse_energy_wh("2.5Wh").unwrap_err().to_string(),
            "bad amount `2.5Wh`: Wh are whole numbers"
        );
        assert_eq!(
            parse_energy_wh("1.0001").unwrap_err().to_string(),
            "bad amount `1.0001`: kWh have at most 3 decimal places"
        );
        assert_eq!(parse_energy_wh("-1").unwrap_err().reason, "it must not be negative");
        assert_eq!(parse_energy_wh("kWh").unwrap_err().reason, "not a decimal number of kWh");
        assert_eq!(parse_energy_wh("").unwrap_err().reason, "not a decimal number of kWh");
    }

    #[test]
    fn prices_powers_and_money() {
        assert_eq!(parse_price_micro_per_kwh("0.11"), Ok(110_000));
        assert_eq!(parse_price_micro_per_kwh("0.11 EUR/kWh"), Ok(110_000));
        assert_eq!(parse_price_micro_per_kwh("0.000001/kWh"), Ok(1));
        assert!(parse_price_micro_per_kwh("0.1234567").unwrap_err().reason.contains("at most 6 decimal"));
        assert!(parse_price_micro_per_kwh("cheap").is_err());
        assert_eq!(parse_power_w("7.4kW"), Ok(7_400));
        assert_eq!(parse_power_w("11"), Ok(11_000));
        assert_eq!(parse_power_w("500W"), Ok(500));
        assert!(parse_power_w("7kVA").is_err());
        assert_eq!(parse_money("50"), Ok(Money { nano: 50_000_000_000, currency: None }));
        assert_eq!(parse_money("12.5 eur"), Ok(Money { nano: 12_500_000_000, currency: Some("EUR".into()) }));
        assert_eq!(parse_money("0.000000001").map(|m| m.nano), Ok(1));
        assert!(parse_money("0.0000000001").unwrap_err().reason.contains("at most 9 decimal"));
        assert!(parse_money("12 euros").is_err());
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_kwh(2_500), "2.500");
        assert_eq!(format_signed_kwh(-800), "-0.800");
        assert_eq!(format_signed_kwh(0), "0.000");
        assert_eq!(format_price(110_000), "0.110000");
        assert_eq!(format_kw(7_400), "7.400");
        assert_eq!(format_money(100_000_000_000, "EUR"), "100.00 EUR");
        assert_eq!(format_money(-275_500_000, "EUR"), "-0.2755 EUR");
        assert_eq!(format_money(1, "EUR"), "0.000000001 EUR");
        assert_eq!(format_money(0, "EUR"), "0.00 EUR");
        assert_eq!(format_money(-10_000_000, "EUR"), "-0.01 EUR");
        assert_eq!(format_money(i128::MIN, "EUR"), "-170141183460469231731687303715.884105728 EUR");
    }
}
