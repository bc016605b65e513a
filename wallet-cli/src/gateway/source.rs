//! Where a meter's readings come from: the seam for meter interfaces. An
//! interface runs on a thread of its own, reads its meter (connecting and
//! reconnecting as it needs) and sends what it saw as [`Observation`]s; the
//! gateway (`gateway/mod.rs`) decides what to sign. DSMR 5 P1 over TCP or a
//! serial port ([`P1`]) is the one built; docs/METER.md says how to add
//! another (SML for German meters, Modbus/SunSpec for inverters).

use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use super::p1::{Frame, Framer, Registers, TelegramError, registers};

/// What an interface saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A reading whose registers passed every check the interface makes.
    Registers(Registers),
    /// Something read that cannot be signed.
    Skipped { skip: Skip, detail: String },
    /// The meter's port is open (again).
    Connected { port: String },
    /// The port could not be opened, closed or fell silent; tried again
    /// after `retry_in`.
    Disconnected { detail: String, retry_in: Duration },
}

/// Why something read was not signed, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    BadCrc,
    MissingRegister,
    BadRegister,
    Truncated,
    Oversized,
    Garbage,
    /// A register below one read before (the gateway's own check).
    RegisterDown,
}

impl Skip {
    pub const ALL: [Skip; 7] = [
        Skip::BadCrc,
        Skip::MissingRegister,
        Skip::BadRegister,
        Skip::Truncated,
        Skip::Oversized,
        Skip::Garbage,
        Skip::RegisterDown,
    ];

    /// Its name in logs and JSON.
    pub fn code(self) -> &'static str {
        match self {
            Skip::BadCrc => "bad_crc",
            Skip::MissingRegister => "missing_register",
            Skip::BadRegister => "bad_register",
            Skip::Truncated => "truncated",
            Skip::Oversized => "oversized",
            Skip::Garbage => "garbage",
            Skip::RegisterDown => "register_down",
        }
    }
}

/// A meter interface: reads its meter until `sink` hangs up. It returns no
/// error: whatever goes wrong is an [`Observation`], and it tries again.
pub trait MeterInterface: Send {
    fn run(self: Box<Self>, sink: SyncSender<Observation>);
}

/// How long a port may stay silent before it is closed and opened again:
/// a DSMR 5 meter sends a telegram every second.
pub const SILENCE: Duration = Duration::from_secs(10);
/// The first pause before opening a port again, doubled after each failure
/// up to [`RETRY_MAX`], and back to the first once a telegram was read.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// DSMR 5's P1 port: 115,200 baud, 8 data bits, no parity, 1 stop bit.
pub const P1_BAUD: u32 = 115_200;

/// Where a P1 port is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum P1Port {
    /// A P1 dongle serving the telegrams over TCP: `tcp://HOST:PORT`.
    Tcp(String),
    /// A serial device (a P1 cable): `/dev/ttyUSB0`.
    Serial(PathBuf),
}

/// Why a `--p1` value names no port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum P1PortError {
    #[error("`{0}` is not tcp://HOST:PORT")]
    BadAddress(String),
    #[error("`{0}` is neither tcp://HOST:PORT nor a serial device such as /dev/ttyUSB0")]
    Unknown(String),
}

impl std::str::FromStr for P1Port {
    type Err = P1PortError;

    fn from_str(text: &str) -> Result<P1Port, P1PortError> {
        if let Some(address) = text.strip_prefix("tcp://") {
            let valid = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(P1PortError::BadAddress(text.to_string()));
            }
            return Ok(P1Port::Tcp(address.to_string()));
        }
        if text.starts_with('/') {
            return Ok(P1Port::Serial(PathBuf::from(text)));
        }
        Err(P1PortError::Unknown(text.to_string()))
    }
}

impl std::fmt::Display for P1Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            P1Port::Tcp(address) => write!(f, "tcp://{address}"),
            P1Port::Serial(path) => write!(f, "{}", path.display()),
        }
    }
}

impl P1Port {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        match self {
            P1Port::Tcp(address) => {
                let stream = std::net::TcpStream::connect(address)?;
                stream.set_read_timeout(Some(SILENCE))?;
                Ok(Box::new(stream))
            }
            P1Port::Serial(path) => {
                let port = serialport::new(path.to_string_lossy(), P1_BAUD)
                    .data_bits(serialport::DataBits::Eight)
                    .parity(serialport::Parity::None)
                    .stop_bits(serialport::StopBits::One)
                    .flow_control(serialport::FlowControl::None)
                    .timeout(SILENCE)
                    .open()
                    .map_err(std::io::Error::from)?;
                Ok(Box::new(port))
            }
        }
    }
}

/// A DSMR 5 meter's P1 port.
#[derive(Debug)]
pub struct P1 {
    pub port: P1Port,
}

/// Why reading a port stopped.
enum Stopped {
    /// The gateway hung up.
    Gone,
    /// The port closed or failed; whether a telegram was read first.
    Port { detail: String, read_one: bool },
}

impl MeterInterface for P1 {
    fn run(self: Box<Self>, sink: SyncSender<Observation>) {
        let mut retry_in = RETRY_FIRST;
        loop {
            let detail = match self.port.open() {
                Ok(mut reader) => {
                    if sink.send(Observation::Connected { port: self.port.to_string() }).is_err() {
                        return;
                    }
                    match read_telegrams(&mut reader, &sink) {
                        Stopped::Gone => return,
                        Stopped::Port { detail, read_one } => {
                            if read_one {
                                retry_in = RETRY_FIRST;
                            }
                            detail
                        }
                    }
                }
                Err(error) => format!("cannot open {}: {error}", self.port),
            };
            if sink.send(Observation::Disconnected { detail, retry_in }).is_err() {
                return;
            }
            std::thread::sleep(retry_in);
            retry_in = (retry_in * 2).min(RETRY_MAX);
        }
    }
}

/// Reads telegrams from an open port until it ends, fails or falls silent.
fn read_telegrams(reader: &mut dyn Read, sink: &SyncSender<Observation>) -> Stopped {
    let mut framer = Framer::default();
    let mut buffer = [0_u8; 4_096];
    let mut frames = Vec::new();
    let mut read_one = false;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => return Stopped::Port { detail: "the port closed".into(), read_one },
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                let detail = format!("nothing read for {} s", SILENCE.as_secs());
                return Stopped::Port { detail, read_one };
            }
            Err(error) => return Stopped::Port { detail: error.to_string(), read_one },
        };
        framer.push(&buffer[..read], &mut frames);
        for frame in frames.drain(..) {
            let observation = observe(frame);
            read_one |= matches!(observation, Observation::Registers(_));
            if sink.send(observation).is_err() {
                return Stopped::Gone;
            }
        }
    }
}

/// What a frame says.
fn observe(frame: Frame) -> Observation {
    let skipped = |skip: Skip, detail: String| Observation::Skipped { skip, detail };
    match frame {
        Frame::Telegram(bytes) => match registers(&bytes) {
            Ok(registers) => Observation::Registers(registers),
            Err(error) => {
                let skip = match &error {
                    TelegramError::BadCrc { .. } => Skip::BadCrc,
                    TelegramError::Missing(_) => Skip::MissingRegister,
                    TelegramError::Repeated(_) | TelegramError::BadValue { .. } | TelegramError::Overflow => {
                        Skip::BadRegister
                    }
                };
                skipped(skip, format!("a telegram: {error}"))
            }
        },
        Frame::Truncated { bytes } => {
            skipped(Skip::Truncated, format!("a telegram cut short after {bytes} bytes"))
        }
        Frame::Oversized => skipped(Skip::Oversized, "a telegram longer than any meter sends".into()),
        Frame::Garbage { bytes } => skipped(Skip::Garbage, format!("{bytes} bytes outside any telegram")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_p1_port_is_a_tcp_address_or_a_device_path() {
        assert_eq!("tcp://127.0.0.1:2000".parse(), Ok(P1Port::Tcp("127.0.0.1:2000".into())));
        assert_eq!("tcp://p1.local:23".parse(), Ok(P1Port::Tcp("p1.local:23".into())));
        assert_eq!("/dev/ttyUSB0".parse(), Ok(P1Port::Serial("/dev/ttyUSB0".into())));
        for bad in ["tcp://host", "tcp://:80", "tcp://host:port", "ttyUSB0", "http://host:80", ""] {
            assert!(bad.parse::<P1Port>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_serial_p1_port_is_opened_at_115200_8n1_and_read() {
        use std::io::Write;

        use serialport::SerialPort as _;
        // A pseudo-terminal stands in for the P1 cable: the meter writes to
        // its master side, the gateway opens its device path.
        let (mut meter, device) = serialport::TTYPort::pair().unwrap();
        let path = device.name().unwrap();
        drop(device);
        let (sink, observations) = std::sync::mpsc::sync_channel(16);
        let interface = Box::new(P1 { port: P1Port::Serial(path.clone().into()) });
        std::thread::spawn(move || interface.run(sink));
        let next = || observations.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(next(), Observation::Connected { port: path });
        meter.write_all(&super::super::p1::telegram([2_000, 1], [3, 40])).unwrap();
        assert_eq!(next(), Observation::Registers(Registers { import_wh: 2_001, export_wh: 43 }));
        // A device that does not exist is a disconnection, tried again.
        let (sink, observations) = std::sync::mpsc::sync_channel(16);
        let missing = Box::new(P1 { port: P1Port::Serial("/dev/gridshare-no-such-port".into()) });
        std::thread::spawn(move || missing.run(sink));
        let observed = observations.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(&observed, Observation::Disconnected { detail, retry_in }
                if detail.contains("cannot open /dev/gridshare-no-such-port") && *retry_in == RETRY_FIRST),
            "{observed:?}"
        );
    }

    #[test]
    fn a_stream_of_good_bad_and_broken_telegrams_is_observed_in_order() {
        let good = super::super::p1::telegram([1_000, 0], [0, 500]);
        let mut bad_crc = good.clone();
        let at = bad_crc.len() - 3;
        bad_crc[at] = if bad_crc[at] == b'0' { b'1' } else { b'0' };
        let stream = [b"junk".as_slice(), &good[..40], &bad_crc, &good].concat();
        let (sink, observations) = std::sync::mpsc::sync_channel(16);
        let stopped = read_telegrams(&mut stream.as_slice(), &sink);
        assert!(matches!(stopped, Stopped::Port { read_one: true, .. }));
        let skips: Vec<Observation> = observations.try_iter().collect();
        let kinds: Vec<Option<Skip>> = skips
            .iter()
            .map(|observation| match observation {
                Observation::Skipped { skip, .. } => Some(*skip),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [Some(Skip::Garbage), Some(Skip::Truncated), Some(Skip::BadCrc), None]);
        assert_eq!(skips[3], Observation::Registers(Registers { import_wh: 1_000, export_wh: 500 }));
    }
}
