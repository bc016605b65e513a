//! Exact conversion between the decimals people write ("2.5" kWh, "0.11"
//! per kWh in the CLI, a manifest or `genesis new`) and the integers of the
//! protocol (Wh, micro-currency per kWh, thousandths). More precision than
//! the unit has is refused, never rounded; no floats are involved.

/// Why a decimal was refused. The caller names the field or unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not digits with at most one point (no sign but a `-` on zero, no
    /// exponent, no separators).
    #[error("not a decimal number")]
    NotANumber,
    #[error("more than {decimals} decimal places")]
    TooPrecise { decimals: u32 },
    #[error("negative")]
    Negative,
    #[error("too large")]
    TooLarge,
}

/// Parses a non-negative decimal with at most `decimals` places into the
/// integer `value × 10^decimals`: `"2.5"` with 3 places is `2500`,
/// `"2.5000"` is accepted (its value has one place) and `"2.5001"` is not.
/// Surrounding whitespace is ignored; `.5` and `5.` are numbers, `-0` is 0.
pub fn parse_scaled(text: &str, decimals: u32) -> Result<u64, DecimalError> {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|byte| byte.is_ascii_digit())
        || !fraction.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(DecimalError::NotANumber);
    }
    if negative && (whole.bytes().chain(fraction.bytes()).any(|byte| byte != b'0')) {
        return Err(DecimalError::Negative);
    }
    let fraction = fraction.trim_end_matches('0');
    let places = u32::try_from(fraction.len()).map_err(|_| DecimalError::TooPrecise { decimals })?;
    if places > decimals {
        return Err(DecimalError::TooPrecise { decimals });
    }
    let scale = 10_u64.checked_pow(decimals).ok_or(DecimalError::TooLarge)?;
    let whole = whole.trim_start_matches('0');
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| DecimalError::TooLarge)? };
    let fraction_units: u64 = if fraction.is_empty() {
        0
    } else {
        // At most `decimals` digits, times the missing places: below `scale`.
        let value: u64 = fraction.parse().map_err(|_| DecimalError::TooLarge)?;
        value * 10_u64.pow(decimals - places)
    };
    whole.checked_mul(scale).and_then(|units| units.checked_add(fraction_units)).ok_or(DecimalError::TooLarge)
}

/// `value / 10^decimals` with exactly `decimals` places: `2500` with 3
/// places is `"2.500"`.
pub fn format_scaled(value: u64, decimals: u32) -> String {
    let Some(scale) = 10_u64.checked_pow(decimals) else {
        // More places than a u64 has digits: all of it is the fraction.
        return format!("0.{value:0width$}", width = decimals as usize);
    };
    if decimals == 0 {
        return value.to_string();
    }
    format!("{}.{:0width$}", value / scale, value % scale, width = decimals as usize)
}

/// `value / 10^decimals` as its shortest exact decimal: `300000` micro is
/// `"0.3"`, `12000000` is `"12"`.
pub fn format_scaled_short(value: u64, decimals: u32) -> String {
    let full = format_scaled(value, decimals);
    if !full.contains('.') {
        return full;
    }
    full.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Energy for people: `2.500` (kWh, 3 decimals).
pub fn format_kwh(energy_wh: u64) -> String {
    format_scaled(energy_wh, 3)
}

/// A signed energy for people: `-0.800` (kWh, 3 decimals).
pub fn format_signed_kwh(energy_wh: i64) -> String {
    let magnitude = format_kwh(energy_wh.unsigned_abs());
    if energy_wh < 0 { format!("-{magnitude}") } else { magnitude }
}

/// A price for people: `0.110000` (currency per kWh, 6 decimals).
pub fn format_price(price_micro_per_kwh: u64) -> String {
    format_scaled(price_micro_per_kwh, 6)
}

/// A power for people: `7.400` (kW, 3 decimals).
pub fn format_kw(power_w: u64) -> String {
    format_scaled(power_w, 3)
}

/// Money with exactly 9 decimals (the ledger's nano-currency), for files
/// a spreadsheet reads: `-0.275500000`.
pub fn format_money_fixed(nano: i128) -> String {
    const NANOS_PER_UNIT: u128 = 1_000_000_000;
    let magnitude = nano.unsigned_abs();
    let sign = if nano < 0 { "-" } else { "" };
    format!("{sign}{}.{:09}", magnitude / NANOS_PER_UNIT, magnitude % NANOS_PER_UNIT)
}

/// Money for people, exactly: at least 2 decimals, more only when they are
/// not zero, then the currency: `100.00 EUR`, `-0.2755 EUR`.
pub fn format_money(nano: i128, currency: &str) -> String {
    const NANOS_PER_UNIT: u128 = 1_000_000_000;
    let magnitude = nano.unsigned_abs();
    let whole = magnitude / NANOS_PER_UNIT;
    let fraction = format!("{:09}", magnitude % NANOS_PER_UNIT);
    let significant = fraction.trim_end_matches('0');
    let shown = if significant.len() < 2 { &fraction[..2] } else { significant };
    let sign = if nano < 0 { "-" } else { "" };
    format!("{sign}{whole}.{shown} {currency}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_scaled("2.5", 3), Ok(2_500));
        assert_eq!(parse_scaled("2.5000", 3), Ok(2_500));
        assert_eq!(parse_scaled(" 2.5 ", 3), Ok(2_500));
        assert_eq!(parse_scaled("0.000001", 6), Ok(1));
        assert_eq!(parse_scaled("0", 6), Ok(0));
        assert_eq!(parse_scaled("-0", 6), Ok(0));
        assert_eq!(parse_scaled("-0.000", 6), Ok(0));
        assert_eq!(parse_scaled("12", 3), Ok(12_000));
        assert_eq!(parse_scaled(".5", 3), Ok(500));
        assert_eq!(parse_scaled("5.", 3), Ok(5_000));
        assert_eq!(parse_scaled("007", 0), Ok(7));
        assert_eq!(parse_scaled("18446744073709551.615", 3), Ok(u64::MAX));
        assert_eq!(parse_scaled("18446744073709551615", 0), Ok(u64::MAX));
        assert_eq!(parse_scaled("1", 19), Ok(10_u64.pow(19)));
    }

    #[test]
    fn refuses_what_is_not_exact() {
        assert_eq!(parse_scaled("2.5001", 3), Err(DecimalError::TooPrecise { decimals: 3 }));
        assert_eq!(parse_scaled("2.5", 0), Err(DecimalError::TooPrecise { decimals: 0 }));
        assert_eq!(parse_scaled("-1", 3), Err(DecimalError::Negative));
        assert_eq!(parse_scaled("-0.0001", 3), Err(DecimalError::Negative));
        assert_eq!(parse_scaled("18446744073709551.616", 3), Err(DecimalError::TooLarge));
        assert_eq!(parse_scaled("99999999999999999999999", 0), Err(DecimalError::TooLarge));
        assert_eq!(parse_scaled("1", 20), Err(DecimalError::TooLarge));
        for garbage in
            ["", " ", ".", "-", "2.5kwhh", "1e3", "+1", "0x10", "1,5", "NaN", "inf", "1.2.3", "--1", "1 000"]
        {
            assert_eq!(parse_scaled(garbage, 3), Err(DecimalError::NotANumber), "{garbage:?} was accepted");
        }
    }

    #[test]
    fn formats_with_all_places_or_the_shortest() {
        assert_eq!(format_scaled(2_500, 3), "2.500");
        assert_eq!(format_scaled(224_000, 6), "0.224000");
        assert_eq!(format_scaled(0, 3), "0.000");
        assert_eq!(format_scaled(2_500, 0), "2500");
        assert_eq!(format_scaled(u64::MAX, 3), "18446744073709551.615");
        assert_eq!(format_scaled_short(300_000, 6), "0.3");
        assert_eq!(format_scaled_short(12_000_000, 6), "12");
        assert_eq!(format_scaled_short(0, 6), "0");
        assert_eq!(format_scaled_short(1, 6), "0.000001");
        assert_eq!(format_scaled_short(70, 0), "70");
        for (value, decimals) in [(1, 3), (2_500, 3), (u64::MAX, 9), (120_000, 6), (5, 0)] {
            assert_eq!(parse_scaled(&format_scaled(value, decimals), decimals), Ok(value));
            assert_eq!(parse_scaled(&format_scaled_short(value, decimals), decimals), Ok(value));
        }
    }

    #[test]
    fn money_for_files_has_fixed_decimals() {
        assert_eq!(format_money_fixed(-275_500_000), "-0.275500000");
        assert_eq!(format_money_fixed(12_000_000_000), "12.000000000");
        assert_eq!(format_money_fixed(i128::MIN), "-170141183460469231731687303715.884105728");
    }
}
