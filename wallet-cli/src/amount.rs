//! Exact conversion between the decimals people type ("2.5" kWh, "0.11" per
//! kWh) and the integers the protocol uses (Wh, micro-currency per kWh).
//! Input with more precision than the unit is refused, never rounded.

use std::str::FromStr;

use rust_decimal::Decimal;

/// Decimal places of each unit relative to what people type.
pub mod scale {
    /// kWh typed, Wh stored.
    pub const KWH_TO_WH: u32 = 3;
    /// Currency per kWh typed, micro-currency per kWh stored.
    pub const CURRENCY_TO_MICRO: u32 = 6;
    /// A fraction in [0, 1] typed, thousandths stored.
    pub const FRACTION_TO_THOUSANDTHS: u32 = 3;
}

/// Why a typed amount was refused.
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
/// integer `value × 10^decimals`. `"2.5"` with 3 places is `2500`;
/// `"2.5000"` is accepted (its value has one place), `"2.5001"` is not.
pub fn parse_scaled(text: &str, decimals: u32) -> Result<u64, AmountError> {
    let trimmed = text.trim();
    let is_plain = !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    let value = Decimal::from_str(trimmed)
        .ok()
        .filter(|_| is_plain)
        .ok_or_else(|| AmountError::NotANumber { text: text.to_string() })?
        .normalize();
    if value.is_sign_negative() && !value.is_zero() {
        return Err(AmountError::Negative { text: text.to_string() });
    }
    if value.scale() > decimals {
        return Err(AmountError::TooPrecise { text: text.to_string(), decimals });
    }
    let too_large = || AmountError::TooLarge { text: text.to_string() };
    let factor = 10_i128.checked_pow(decimals - value.scale()).ok_or_else(too_large)?;
    let scaled = value.mantissa().checked_mul(factor).ok_or_else(too_large)?;
    u64::try_from(scaled.unsigned_abs()).map_err(|_| too_large())
}

/// Formats `value / 10^decimals` with exactly `decimals` places: `2500` with
/// 3 places is `"2.500"`.
pub fn format_scaled(value: u64, decimals: u32) -> String {
    Decimal::from_i128_with_scale(i128::from(value), decimals).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_scaled("2.5", 3), Ok(2_500));
        assert_eq!(parse_scaled("2.5000", 3), Ok(2_500));
        assert_eq!(parse_scaled("0.000001", 6), Ok(1));
        assert_eq!(parse_scaled("0", 6), Ok(0));
        assert_eq!(parse_scaled("-0", 6), Ok(0));
        assert_eq!(parse_scaled("12", 3), Ok(12_000));
        assert_eq!(parse_scaled(".5", 3), Ok(500));
        assert_eq!(parse_scaled("18446744073709551.615", 3), Ok(u64::MAX));
    }

    #[test]
    fn refuses_what_is_not_exact() {
        assert!(matches!(parse_scaled("2.5001", 3), Err(AmountError::TooPrecise { decimals: 3, .. })));
        assert!(matches!(parse_scaled("-1", 3), Err(AmountError::Negative { .. })));
        assert!(matches!(parse_scaled("18446744073709551.616", 3), Err(AmountError::TooLarge { .. })));
        for garbage in ["", " ", "2.5kwhh", "1e3", "+1", "0x10", "1,5", "NaN", "inf", "1.2.3", "--1"] {
            assert!(
                matches!(parse_scaled(garbage, 3), Err(AmountError::NotANumber { .. })),
                "{garbage:?} was accepted"
            );
        }
    }

    #[test]
    fn formats_with_all_places() {
        assert_eq!(format_scaled(2_500, 3), "2.500");
        assert_eq!(format_scaled(224_000, 6), "0.224000");
        assert_eq!(format_scaled(0, 3), "0.000");
        assert_eq!(format_scaled(u64::MAX, 3), "18446744073709551.615");
    }
}
