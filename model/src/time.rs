//! Time on the wire: a nanosecond [`Timestamp`] printed the way protojson prints
//! `google.protobuf.Timestamp`, and [`parse_time`] for the `--since`/`--until` style values users
//! type ("5m", "2024-06-01T10:00:00Z").

use std::fmt;
use std::str::FromStr;

use jiff::fmt::temporal::DateTimePrinter;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A point in time: nanoseconds since the Unix epoch, in UTC.
///
/// An `i64` of nanoseconds covers 1677 to 2262, plenty for flows, and keeps the type `Copy`,
/// cheap to compare and cheap to store in ring buffers.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// The earliest representable time (1677-09-21).
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable time (2262-04-11).
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// A timestamp `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_unix_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch and the nanoseconds within that second (always `0..1e9`),
    /// as `google.protobuf.Timestamp` stores them.
    pub const fn as_seconds_and_nanos(self) -> (i64, u32) {
        (
            self.0.div_euclid(NANOS_PER_SECOND),
            self.0.rem_euclid(NANOS_PER_SECOND) as u32,
        )
    }

    /// The current system time.
    ///
    /// Not available on `wasm32-unknown-unknown`, where std has no clock; the UI passes the
    /// browser's time to [`parse_time`] instead.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            // A clock before 1970 is broken; the epoch is the least surprising answer.
            .unwrap_or(0);
        Timestamp(since_epoch)
    }

    /// Adds a signed number of nanoseconds, saturating at [`Timestamp::MIN`]/[`Timestamp::MAX`].
    pub const fn saturating_add_nanos(self, nanos: i64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Parses an RFC 3339 timestamp with a `Z` or numeric offset and up to 9 fractional digits,
    /// as protojson accepts for `google.protobuf.Timestamp`.
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimeError> {
        let parsed: jiff::Timestamp =
            input.parse().map_err(|e: jiff::Error| TimeError::Invalid {
                input: input.to_owned(),
                reason: e.to_string(),
            })?;
        Self::from_jiff(parsed).ok_or_else(|| TimeError::OutOfRange {
            input: input.to_owned(),
        })
    }

    fn from_jiff(ts: jiff::Timestamp) -> Option<Self> {
        i64::try_from(ts.as_nanosecond()).ok().map(Timestamp)
    }

    fn to_jiff(self) -> jiff::Timestamp {
        // Every i64 of nanoseconds (years 1677..2262) is inside jiff's range (-9999..9999).
        jiff::Timestamp::from_nanosecond(i128::from(self.0)).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// Formats into `buf` without allocating and returns the text, e.g.
    /// `2024-06-01T10:00:00.123Z`. Like protojson, uses 0, 3, 6 or 9 fractional digits: the
    /// fewest that represent the value exactly.
    pub fn format_rfc3339(self, buf: &mut TimestampBuf) -> &str {
        let (_, nanos) = self.as_seconds_and_nanos();
        let precision = if nanos == 0 {
            0
        } else if nanos % 1_000_000 == 0 {
            3
        } else if nanos % 1_000 == 0 {
            6
        } else {
            9
        };
        buf.len = 0;
        let printer = DateTimePrinter::new().precision(Some(precision));
        // The buffer holds the longest output (30 bytes), so printing cannot fail.
        if printer.print_timestamp(&self.to_jiff(), &mut *buf).is_err() {
            buf.len = 0;
        }
        buf.as_str()
    }
}

/// Stack space for [`Timestamp::format_rfc3339`], so serializing a flow's time never allocates.
#[derive(Clone, Copy)]
pub struct TimestampBuf {
    bytes: [u8; 40],
    len: usize,
}

impl TimestampBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        TimestampBuf {
            bytes: [0; 40],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only jiff's ASCII output is ever written here.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Default for TimestampBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl jiff::fmt::Write for TimestampBuf {
    fn write_str(&mut self, s: &str) -> Result<(), jiff::Error> {
        let end = self.len + s.len();
        let Some(dst) = self.bytes.get_mut(self.len..end) else {
            return Err(jiff::Error::from_args(format_args!(
                "timestamp longer than its buffer"
            )));
        };
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format_rfc3339(&mut TimestampBuf::new()))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.format_rfc3339(&mut TimestampBuf::new()))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as \"2024-06-01T10:00:00.123Z\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// A time value that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a timestamp in an accepted format.
    #[error("{input:?} is not an RFC 3339 timestamp: {reason}")]
    Invalid {
        /// The rejected input.
        input: String,
        /// What the parser objected to.
        reason: String,
    },
    /// A valid timestamp outside the years 1677..2262 that nanoseconds in an i64 can hold.
    #[error("{input:?} is outside the supported range (years 1677 to 2262)")]
    OutOfRange {
        /// The rejected input.
        input: String,
    },
    /// Neither a relative duration nor an absolute time.
    #[error(
        "{input:?} is neither a duration before now (e.g. \"30s\", \"5m\", \"1h43m\") nor a time \
         (e.g. \"2024-06-01\", \"2024-06-01T10:00:00Z\", \"2024-06-01T10:00:00.123+02:00\", \
         \"Sat, 01 Jun 2024 10:00:00 +0200\")"
    )]
    Unrecognized {
        /// The rejected input.
        input: String,
    },
}

/// Parses a user-supplied time the way `hubble observe --since/--until` does.
///
/// Accepted, in this order:
/// - a Go-style duration meaning "that long before `now`": `"3s"`, `"4m"`, `"1h43m"`, `"1.5h"`,
///   `"250ms"` (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`);
/// - RFC 3339 with any number of fractional digits and a `Z` or `±hh:mm` offset;
/// - `2006-01-02` (midnight UTC), `2006-01-02T15Z`, `2006-01-02T15-07:00`,
///   `2006-01-02T15:04Z`, `2006-01-02T15:04-07:00`;
/// - RFC 1123 with a numeric zone: `Mon, 02 Jan 2006 15:04:05 -0700`.
///
/// `now` is a parameter so callers (and tests) choose the clock; see [`Timestamp::now`].
pub fn parse_time(input: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    let input = input.trim();
    if let Some(nanos) = parse_duration_nanos(input) {
        return Ok(now.saturating_add_nanos(nanos.saturating_neg()));
    }
    let parsed = parse_absolute(input).ok_or_else(|| TimeError::Unrecognized {
        input: input.to_owned(),
    })?;
    Timestamp::from_jiff(parsed).ok_or_else(|| TimeError::OutOfRange {
        input: input.to_owned(),
    })
}

fn parse_absolute(input: &str) -> Option<jiff::Timestamp> {
    // Go's RFC 3339 layouts need a 'T', jiff would also take a space; stay as strict as Hubble.
    if let Some((date, _)) = input.split_once('T') {
        if date.len() == 10 {
            return input.parse::<jiff::Timestamp>().ok();
        }
        return None;
    }
    if input.len() == 10 && input.as_bytes()[4] == b'-' {
        return format!("{input}T00:00:00Z").parse::<jiff::Timestamp>().ok();
    }
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(input)
        .ok()
}

/// Parses Go's `time.ParseDuration` syntax: an optional sign, then one or more
/// `<decimal><unit>` parts. Returns `None` for anything else, including overflow.
pub fn parse_duration_nanos(input: &str) -> Option<i64> {
    let (negative, mut rest) = match input.as_bytes().first()? {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| c.is_ascii_digit() || c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: i64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3600 * NANOS_PER_SECOND,
            _ => return None,
        };
        total = total.checked_add(decimal_times(number, unit_nanos)?)?;
        rest = after;
    }
    Some(if negative { -total } else { total })
}

/// `number` (digits with an optional fraction) times `unit` nanoseconds, truncated to whole
/// nanoseconds as Go does.
fn decimal_times(number: &str, unit: i64) -> Option<i64> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.contains('.') {
        return None;
    }
    let whole_value: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole_value.checked_mul(unit)?;
    let mut scale = unit;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos.checked_add(i64::from(digit - b'0') * scale)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn formats_with_protojson_precision() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_500_000_000_000_000_000, "2017-07-14T02:40:00Z"),
            (1_500_000_000_120_000_000, "2017-07-14T02:40:00.120Z"),
            (1_500_000_000_000_123_000, "2017-07-14T02:40:00.000123Z"),
            (1_500_000_000_000_000_001, "2017-07-14T02:40:00.000000001Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
        ];
        for (nanos, text) in cases {
            assert_eq!(Timestamp::from_unix_nanos(nanos).to_string(), text);
            assert_eq!(ts(text).as_unix_nanos(), nanos, "parsing {text}");
        }
        assert_eq!(Timestamp::MAX.to_string(), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(Timestamp::MIN.to_string(), "1677-09-21T00:12:43.145224192Z");
    }

    #[test]
    fn parses_offsets_and_any_fraction() {
        assert_eq!(
            ts("2017-07-14T04:40:00.5+02:00"),
            Timestamp::from_unix_nanos(1_500_000_000_500_000_000)
        );
        assert!(Timestamp::parse_rfc3339("2017-07-14T04:40:00").is_err());
        assert!(matches!(
            Timestamp::parse_rfc3339("3000-01-01T00:00:00Z"),
            Err(TimeError::OutOfRange { .. })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let t = Timestamp::from_unix_nanos(1_717_236_000_123_456_000);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""2024-06-01T10:00:00.123456Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }

    #[test]
    fn go_durations() {
        let s = NANOS_PER_SECOND;
        assert_eq!(parse_duration_nanos("3s"), Some(3 * s));
        assert_eq!(parse_duration_nanos("4m"), Some(240 * s));
        assert_eq!(parse_duration_nanos("1h43m"), Some(6180 * s));
        assert_eq!(parse_duration_nanos("1.5h"), Some(5400 * s));
        assert_eq!(parse_duration_nanos(".5s"), Some(s / 2));
        assert_eq!(parse_duration_nanos("250ms"), Some(s / 4));
        assert_eq!(parse_duration_nanos("2µs"), Some(2000));
        assert_eq!(parse_duration_nanos("-1m"), Some(-60 * s));
        assert_eq!(parse_duration_nanos("0"), Some(0));
        for bad in [
            "",
            "10",
            "1x",
            "h",
            "1h43",
            "1..5s",
            "9999999999h",
            "-",
            ".",
        ] {
            assert_eq!(parse_duration_nanos(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_time_relative_and_absolute() {
        let now = ts("2024-06-01T12:00:00Z");
        assert_eq!(
            parse_time("1h43m", now).unwrap(),
            ts("2024-06-01T10:17:00Z")
        );
        assert_eq!(parse_time(" 3s ", now).unwrap(), ts("2024-06-01T11:59:57Z"));
        let absolute = [
            ("2024-05-01T08:30:00Z", "2024-05-01T08:30:00Z"),
            (
                "2024-05-01T08:30:00.123456789-02:00",
                "2024-05-01T10:30:00.123456789Z",
            ),
            ("2024-05-01", "2024-05-01T00:00:00Z"),
            ("2024-05-01T08Z", "2024-05-01T08:00:00Z"),
            ("2024-05-01T08-07:00", "2024-05-01T15:00:00Z"),
            ("2024-05-01T08:30Z", "2024-05-01T08:30:00Z"),
            ("2024-05-01T08:30+01:00", "2024-05-01T07:30:00Z"),
            ("Wed, 01 May 2024 08:30:00 -0700", "2024-05-01T15:30:00Z"),
        ];
        for (input, want) in absolute {
            assert_eq!(parse_time(input, now).unwrap(), ts(want), "{input}");
        }
    }

    #[test]
    fn parse_time_errors_say_what_is_accepted() {
        let now = Timestamp::UNIX_EPOCH;
        for bad in ["yesterday", "10", "2024-13-01", "2024-05-01 08:30:00Z", ""] {
            let err = parse_time(bad, now).unwrap_err();
            assert!(
                matches!(err, TimeError::Unrecognized { .. }),
                "{bad:?}: {err}"
            );
        }
        let msg = parse_time("soon", now).unwrap_err().to_string();
        assert!(msg.contains("\"soon\"") && msg.contains("1h43m"), "{msg}");
        assert!(matches!(
            parse_time("2500-01-01", now),
            Err(TimeError::OutOfRange { .. })
        ));
    }
}
