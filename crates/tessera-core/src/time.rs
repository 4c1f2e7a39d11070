//! Timestamps as Tessera shows them: RFC 3339 in UTC with milliseconds
//! (`2026-12-05T21:40:00.123Z`), the one format of every JSON document the CLI and the server
//! emit. The store keeps milliseconds since the Unix epoch; they are formatted here, without
//! allocating (a task document of a 10,000-item loop formats 40,000 of them).

use std::fmt;

use serde::Serializer;

/// Milliseconds since the Unix epoch, displayed as RFC 3339 (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rfc3339(pub u64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = format_millis(self.0);
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// `ms` as an RFC 3339 string.
pub fn rfc3339(ms: u64) -> String {
    Rfc3339(ms).to_string()
}

/// An RFC 3339 time (`2026-01-01T00:00:00Z`, `2026-01-01T03:00:00+01:00`) as ms since the
/// epoch; the error says what is wrong, for a message that names its field.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let t = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        format!("`{text}` is not an RFC 3339 time such as \"2026-01-01T00:00:00Z\" ({e})")
    })?;
    u64::try_from(t.timestamp_millis()).map_err(|_| format!("`{text}` is before 1970-01-01"))
}

/// The 24 bytes of `YYYY-MM-DDTHH:MM:SS.mmmZ` (years after 9999 are clamped to 9999-12-31:
/// no real clock reaches them).
fn format_millis(ms: u64) -> [u8; 24] {
    const MAX: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = ms.min(MAX);
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u64, 4);
    put(5, month as u64, 2);
    put(8, day as u64, 2);
    put(11, h, 2);
    put(14, m, 2);
    put(17, s, 2);
    put(20, milli, 3);
    out
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `#[serde(serialize_with = "tessera_core::time::ser")]` for a `u64` of milliseconds.
pub fn ser<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Rfc3339(*ms))
}

/// [`ser`] for an `Option<u64>` (`null` when absent).
pub fn ser_opt<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.collect_str(&Rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// A JSON value for milliseconds (`null` for `None`).
pub fn json(ms: Option<u64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |ms| {
        serde_json::Value::String(rfc3339(ms))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_507_200_123), "2026-12-05T21:46:40.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_of_four_centuries_is_a_valid_date() {
        let mut last = String::new();
        for day in 0..146_097u64 {
            let s = rfc3339(day * 86_400_000 + 86_399_999);
            assert!(s > last, "{s} after {last}");
            let (m, d): (u32, u32) = (s[5..7].parse().unwrap(), s[8..10].parse().unwrap());
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{s}");
            last = s;
        }
    }
}
