//! DSMR 5 P1 telegrams (docs/METER.md): framing a byte stream into
//! telegrams, checking each one's CRC16 and reading its four energy
//! registers, exactly, in Wh. Everything else a telegram carries is
//! ignored. Pure and bounded: no I/O, no allocation beyond one telegram.

/// The most bytes one telegram may have. A DSMR 5 electricity telegram is
/// about 1 KiB, and under 3 KiB with four M-Bus devices and a text message;
/// past this, what was gathered is dropped as [`Frame::Oversized`].
pub const TELEGRAM_BYTES_MAX: usize = 8_192;
/// Bytes outside any telegram reported at most in one [`Frame::Garbage`].
const GARBAGE_REPORT_BYTES: usize = TELEGRAM_BYTES_MAX;

/// The OBIS codes of the registers read: energy delivered to the household
/// (import) and by it (export), tariff 1 and tariff 2, each in kWh with
/// three decimals.
pub const IMPORT_TARIFF_1: &str = "1-0:1.8.1";
pub const IMPORT_TARIFF_2: &str = "1-0:1.8.2";
pub const EXPORT_TARIFF_1: &str = "1-0:2.8.1";
pub const EXPORT_TARIFF_2: &str = "1-0:2.8.2";
const REGISTERS: [&str; 4] = [IMPORT_TARIFF_1, IMPORT_TARIFF_2, EXPORT_TARIFF_1, EXPORT_TARIFF_2];
/// Digits before the decimal point of a register, at most (DSMR 5 has 6).
const REGISTER_DIGITS_MAX: usize = 9;

/// A meter's cumulative registers: import and export since installation,
/// both tariffs summed, in Wh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    pub import_wh: u64,
    pub export_wh: u64,
}

/// What the framer found in the byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// From `/` through `!` and the four characters after it (the CRC).
    Telegram(Vec<u8>),
    /// A telegram cut short: a new one began before it ended.
    Truncated { bytes: usize },
    /// A telegram longer than [`TELEGRAM_BYTES_MAX`].
    Oversized,
    /// Bytes outside any telegram (line ends between telegrams excepted).
    Garbage { bytes: usize },
}

/// Splits a byte stream into telegrams, whatever the reads' boundaries.
#[derive(Debug, Default)]
pub struct Framer {
    /// The telegram being gathered, from its `/`.
    telegram: Vec<u8>,
    /// Where its `!` is, once seen.
    bang: Option<usize>,
    /// Garbage bytes seen since the last report.
    garbage: usize,
}

impl Framer {
    /// Takes the next bytes of the stream; what they complete goes to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &byte in bytes {
            self.push_byte(byte, out);
        }
    }

    fn push_byte(&mut self, byte: u8, out: &mut Vec<Frame>) {
        if byte == b'/' {
            self.report_garbage(out);
            if !self.telegram.is_empty() {
                out.push(Frame::Truncated { bytes: self.telegram.len() });
            }
            self.telegram.clear();
            self.bang = None;
            self.telegram.push(byte);
            return;
        }
        if self.telegram.is_empty() {
            if byte != b'\r' && byte != b'\n' {
                self.garbage += 1;
                if self.garbage >= GARBAGE_REPORT_BYTES {
                    self.report_garbage(out);
                }
            }
            return;
        }
        if self.telegram.len() >= TELEGRAM_BYTES_MAX {
            out.push(Frame::Oversized);
            self.telegram.clear();
            self.bang = None;
            return;
        }
        self.telegram.push(byte);
        match self.bang {
            None if byte == b'!' => self.bang = Some(self.telegram.len() - 1),
            Some(bang) if self.telegram.len() == bang + 5 => {
                out.push(Frame::Telegram(std::mem::take(&mut self.telegram)));
                self.bang = None;
            }
            _ => {}
        }
    }

    fn report_garbage(&mut self, out: &mut Vec<Frame>) {
        if self.garbage > 0 {
            out.push(Frame::Garbage { bytes: std::mem::take(&mut self.garbage) });
        }
    }
}

/// Why a telegram's registers cannot be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    #[error("its CRC is {stated}, but its bytes give {computed:04X}")]
    BadCrc { stated: String, computed: u16 },
    #[error("register {0} is missing")]
    Missing(&'static str),
    #[error("register {0} appears twice")]
    Repeated(&'static str),
    #[error("register {obis} is `{value}`, not kWh with 3 decimals")]
    BadValue { obis: &'static str, value: String },
    #[error("its registers add up beyond what a meter counts")]
    Overflow,
}

/// CRC-16/ARC (polynomial 0x8005 reflected, initial value 0), as DSMR 5
/// computes it over a telegram from its `/` through its `!`.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

/// The registers of `telegram` (a [`Frame::Telegram`]), if its CRC holds
/// and each of the four registers appears once, well formed.
pub fn registers(telegram: &[u8]) -> Result<Registers, TelegramError> {
    // A frame ends with `!` and four characters.
    let split = telegram.len().saturating_sub(4);
    let (body, stated) = telegram.split_at(split);
    let computed = crc16(body);
    let stated_text = String::from_utf8_lossy(stated).into_owned();
    let matches = std::str::from_utf8(stated)
        .ok()
        .filter(|text| text.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .and_then(|text| u16::from_str_radix(text, 16).ok())
        .is_some_and(|stated| stated == computed);
    if !matches {
        return Err(TelegramError::BadCrc { stated: stated_text, computed });
    }
    let mut values: [Option<u64>; 4] = [None; 4];
    for line in body.split(|&byte| byte == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for (index, obis) in REGISTERS.iter().enumerate() {
            let Some(rest) = line.strip_prefix(obis.as_bytes()) else { continue };
            let Some(rest) = rest.strip_prefix(b"(") else { continue };
            if values[index].is_some() {
                return Err(TelegramError::Repeated(obis));
            }
            values[index] = Some(kwh_to_wh(rest).ok_or_else(|| TelegramError::BadValue {
                obis,
                value: String::from_utf8_lossy(rest).chars().take(32).collect(),
            })?);
        }
    }
    let value = |index: usize| values[index].ok_or(TelegramError::Missing(REGISTERS[index]));
    let import_wh = value(0)?.checked_add(value(1)?).ok_or(TelegramError::Overflow)?;
    let export_wh = value(2)?.checked_add(value(3)?).ok_or(TelegramError::Overflow)?;
    Ok(Registers { import_wh, export_wh })
}

/// `DIGITS.DDD*kWh)` in Wh, exactly; `None` if it is anything else.
fn kwh_to_wh(value: &[u8]) -> Option<u64> {
    let value = value.strip_suffix(b"*kWh)")?;
    let (whole, fraction) = value.split_at(value.iter().position(|&byte| byte == b'.')?);
    let fraction = &fraction[1..];
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    if !digits(whole) || whole.len() > REGISTER_DIGITS_MAX || fraction.len() != 3 || !digits(fraction) {
        return None;
    }
    let number = |part: &[u8]| part.iter().fold(0_u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
    Some(number(whole) * 1_000 + number(fraction))
}

/// A telegram with these registers and its CRC, as a DSMR 5 meter sends
/// it: for tests, and for the recorded telegrams of docs/METER.md.
pub fn telegram(import_wh: [u64; 2], export_wh: [u64; 2]) -> Vec<u8> {
    let kwh = |wh: u64| format!("{:06}.{:03}*kWh", wh / 1_000, wh % 1_000);
    let body = format!(
        "/ISK5\\2M550T-1012\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(261205143000W)\r\n\
         0-0:96.1.1(4530303434303037313331363132363136)\r\n\
         {IMPORT_TARIFF_1}({})\r\n{IMPORT_TARIFF_2}({})\r\n{EXPORT_TARIFF_1}({})\r\n{EXPORT_TARIFF_2}({})\r\n\
         0-0:96.14.0(0002)\r\n1-0:1.7.0(00.412*kW)\r\n1-0:2.7.0(00.000*kW)\r\n!",
        kwh(import_wh[0]),
        kwh(import_wh[1]),
        kwh(export_wh[0]),
        kwh(export_wh[1]),
    );
    let mut bytes = body.into_bytes();
    let crc = crc16(&bytes);
    bytes.extend_from_slice(format!("{crc:04X}\r\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, &mut out);
        }
        out
    }

    /// The frame of a whole telegram (its trailing line end is not part of it).
    fn framed(telegram: &[u8]) -> Frame {
        Frame::Telegram(telegram[..telegram.len() - 2].to_vec())
    }

    #[test]
    fn crc16_is_crc16_arc() {
        assert_eq!(crc16(b"123456789"), 0xBB3D);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn a_telegram_gives_its_registers_in_wh_exactly() {
        let telegram = telegram([1_234_567, 89_001], [5_000, 999]);
        let out = frames(&[&telegram]);
        assert_eq!(out, [framed(&telegram)]);
        let Frame::Telegram(bytes) = &out[0] else { unreachable!() };
        assert_eq!(registers(bytes), Ok(Registers { import_wh: 1_323_568, export_wh: 5_999 }));
        // The example of docs/METER.md, CRC included.
        assert!(telegram.ends_with(b"1-0:2.7.0(00.000*kW)\r\n!0C30\r\n"));
    }

    #[test]
    fn telegrams_are_framed_whatever_the_reads_boundaries() {
        let (first, second) = (telegram([1, 2], [3, 4]), telegram([5, 6], [7, 8]));
        let stream: Vec<u8> = [first.as_slice(), second.as_slice()].concat();
        for cut in 0..stream.len() {
            let out = frames(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(out, [framed(&first), framed(&second)], "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytewise), [framed(&first), framed(&second)]);
    }

    #[test]
    fn garbage_truncation_and_oversize_are_reported_and_the_next_telegram_still_read() {
        let good = telegram([10, 20], [30, 40]);
        let cut = &good[..good.len() / 2];
        let huge = [b"/".as_slice(), &[b'x'; TELEGRAM_BYTES_MAX + 10]].concat();
        let out = frames(&[b"noise\x00\xff", cut, &good, &huge, &good]);
        assert_eq!(
            out,
            [
                Frame::Garbage { bytes: 7 },
                Frame::Truncated { bytes: cut.len() },
                framed(&good),
                Frame::Oversized,
                Frame::Garbage { bytes: 10 },
                framed(&good),
            ]
        );
    }

    #[test]
    fn a_bad_crc_a_missing_or_malformed_register_is_refused() {
        let good = telegram([1_000, 2_000], [0, 0]);
        let body = &good[..good.len() - 2];
        // One bit flipped in a register: the CRC catches it.
        let mut flipped = body.to_vec();
        let at = flipped.windows(9).position(|window| window == IMPORT_TARIFF_1.as_bytes()).unwrap() + 12;
        flipped[at] ^= 1;
        assert!(matches!(registers(&flipped), Err(TelegramError::BadCrc { .. })));
        // A CRC that is no number.
        let mut no_number = body[..body.len() - 4].to_vec();
        no_number.extend_from_slice(b"ZZZZ");
        assert!(matches!(registers(&no_number), Err(TelegramError::BadCrc { .. })));

        // Well-framed telegrams, their CRC right, their registers not.
        let with_crc = |text: &str| {
            let mut bytes = text.as_bytes().to_vec();
            let crc = crc16(&bytes);
            bytes.extend_from_slice(format!("{crc:04X}").as_bytes());
            bytes
        };
        let all = "1-0:1.8.1(000001.000*kWh)\r\n1-0:1.8.2(000002.000*kWh)\r\n1-0:2.8.1(000000.500*kWh)\r\n";
        assert_eq!(
            registers(&with_crc(&format!("/X\r\n{all}!"))),
            Err(TelegramError::Missing(EXPORT_TARIFF_2))
        );
        for (value, obis) in [
            ("000001.5*kWh", EXPORT_TARIFF_2),
            ("000001.500*Wh", EXPORT_TARIFF_2),
            ("-00001.500*kWh", EXPORT_TARIFF_2),
            ("1234567890.000*kWh", EXPORT_TARIFF_2),
            ("000001.500*kWh", EXPORT_TARIFF_2),
        ] {
            let text = format!("/X\r\n{all}{obis}({value})\r\n!");
            let result = registers(&with_crc(&text));
            if value == "000001.500*kWh" {
                assert_eq!(result, Ok(Registers { import_wh: 3_000, export_wh: 2_000 }));
            } else {
                assert!(matches!(result, Err(TelegramError::BadValue { .. })), "{value}: {result:?}");
            }
        }
        let twice = format!("/X\r\n{all}{all}1-0:2.8.2(000000.000*kWh)\r\n!");
        assert_eq!(registers(&with_crc(&twice)), Err(TelegramError::Repeated(IMPORT_TARIFF_1)));
    }
}
