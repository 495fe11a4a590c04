//! The field rules of `cleanse` and `enrich` (see `src/pipeline/README.md`), implemented once: plain
//! functions over text, and [`FUNCTIONS`], the same functions over Arrow arrays, which both engines
//! register under the same names (DataFusion as scalar UDFs, DuckDB as Arrow scalar functions). The
//! stage SQL calls these for every text rule, never an engine's own `trim`, `lower` or regex, so that
//! the two engines cannot give an input two meanings.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// White space, as every rule means it: the Unicode `White_Space` characters (space, tab, line feed,
/// vertical tab, form feed, carriage return, U+0085, U+00A0 no-break space, U+1680, U+2000–U+200A,
/// U+2028, U+2029, U+202F, U+205F, U+3000). Not white space: U+200B zero-width space, U+FEFF byte
/// order mark, NUL and other control characters.
pub fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// `text` without surrounding white space ([`is_space`]).
pub fn trim(text: &str) -> &str {
    text.trim_matches(is_space)
}

fn ws_trim(text: &str) -> &str {
    trim(text)
}

/// The event types, as stored.
pub const EVENT_TYPES: [&str; 4] = ["page_view", "click", "add_to_cart", "purchase"];

/// An event type: surrounding white space ignored, matched against [`EVENT_TYPES`] ignoring ASCII case
/// only (`PAGE_VIEW` matches; a non-ASCII letter never does, so neither the Kelvin sign `K` nor a
/// fullwidth `ｃｌｉｃｋ` is `click`); `None` when it is none of them (`bad_event_type`).
pub fn parse_event_type(text: &str) -> Option<&'static str> {
    let t = trim(text);
    EVENT_TYPES.into_iter().find(|e| e.eq_ignore_ascii_case(t))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM]` → microseconds since the epoch, UTC; `None` when the
/// text breaks a rule. Surrounding white space is ignored, no zone means UTC, the fraction is
/// truncated to microseconds.
pub fn parse_event_time(text: &str) -> Option<i64> {
    let s = ws_trim(text).as_bytes();
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<u32> {
        let part = &s[a..b];
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = &s[19..];
    let mut micros: u32 = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (i, d) in frac[..digits].iter().enumerate().take(6) {
            micros += u32::from(d - b'0') * 10u32.pow(5 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let d = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let (h, m) = (d(h1)? * 10 + d(h2)?, d(m1)? * 10 + d(m2)?);
            if h > 18 || m > 59 || (h == 18 && m > 0) {
                return None;
            }
            let v = h * 3600 + m * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_micro_opt(hh, mm, ss, micros)?;
    let local = NaiveDateTime::new(date, time).and_utc().timestamp_micros();
    Some(local - offset_s * 1_000_000)
}

/// A revenue: `Ok(None)` when empty, `Ok(Some(cents))` for `DIGITS[.D[D]]` (at most 10 integer
/// digits, surrounding white space ignored), `Err(())` otherwise (`bad_revenue`).
#[allow(clippy::result_unit_err)]
pub fn parse_revenue(text: &str) -> Result<Option<i128>, ()> {
    if text.is_empty() {
        return Ok(None);
    }
    let t = ws_trim(text);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |p: &str| p.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() || int.len() > 10 || !digits(int) || !digits(frac) || frac.len() > 2 || t.ends_with('.')
    {
        return Err(());
    }
    let int: i128 = int.parse().map_err(|_| ())?;
    let frac: i128 = format!("{frac:0<2}").parse().map_err(|_| ())?;
    Ok(Some(int * 100 + frac))
}

/// A dotted-quad IPv4 address as an unsigned 32-bit number; `None` when invalid (four decimal
/// octets 0–255, no sign, no leading zeros, no white space).
pub fn parse_ipv4(text: &str) -> Option<u32> {
    let mut out: u32 = 0;
    let mut parts = 0;
    for part in text.split('.') {
        parts += 1;
        if parts > 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        let v: u32 = part.parse().ok()?;
        if v > 255 {
            return None;
        }
        out = (out << 8) | v;
    }
    (parts == 4).then_some(out)
}

/// The nine input fields as a JSON object, for the `record` column of a `cleanse` reject.
pub fn record_json(fields: &[Option<&str>]) -> String {
    // Written by hand to keep the fields in input order whatever serde_json's map features are.
    let mut out = String::from("{");
    for (i, (name, value)) in crate::pipeline::input::FIELDS.iter().zip(fields).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String(name.to_string()).to_string());
        out.push(':');
        match value {
            Some(v) => out.push_str(&serde_json::Value::String(v.to_string()).to_string()),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

/// One rule as a function over Arrow arrays: its SQL name, argument types, result type, and kernel.
pub struct RuleFunction {
    /// The name the stage SQL calls it by.
    pub name: &'static str,
    /// Argument types (all text).
    pub args: usize,
    /// Result type, with timestamps zone-less (each engine labels them as it keeps instants).
    pub returns: DataType,
    /// The kernel: one output value per row of the arguments.
    pub kernel: fn(&[ArrayRef]) -> Result<ArrayRef, ArrowError>,
}

/// Every rule function both engines register.
pub const FUNCTIONS: &[RuleFunction] = &[
    RuleFunction {
        name: "floe_trim",
        args: 1,
        returns: DataType::Utf8,
        kernel: |a| map_str(a, |s| Some(trim(s).to_string())),
    },
    RuleFunction {
        name: "floe_event_type",
        args: 1,
        returns: DataType::Utf8,
        kernel: |a| map_str(a, |s| parse_event_type(s).map(str::to_string)),
    },
    RuleFunction {
        name: "floe_event_time",
        args: 1,
        returns: DataType::Timestamp(TimeUnit::Microsecond, None),
        kernel: |a| {
            let s = strings(a, 0)?;
            Ok(Arc::new(
                s.iter()
                    .map(|v| v.and_then(parse_event_time))
                    .collect::<TimestampMicrosecondArray>(),
            ))
        },
    },
    RuleFunction {
        name: "floe_revenue_ok",
        args: 1,
        returns: DataType::Boolean,
        kernel: |a| {
            let s = strings(a, 0)?;
            Ok(Arc::new(
                s.iter()
                    .map(|v| Some(v.is_none_or(|v| parse_revenue(v).is_ok())))
                    .collect::<BooleanArray>(),
            ))
        },
    },
    RuleFunction {
        name: "floe_revenue",
        args: 1,
        returns: DataType::Decimal128(12, 2),
        kernel: |a| {
            let s = strings(a, 0)?;
            let out: Decimal128Array = s
                .iter()
                .map(|v| v.and_then(|v| parse_revenue(v).ok().flatten()))
                .collect();
            Ok(Arc::new(out.with_precision_and_scale(12, 2)?))
        },
    },
    RuleFunction {
        name: "floe_ipv4",
        args: 1,
        returns: DataType::Int64,
        kernel: |a| {
            let s = strings(a, 0)?;
            Ok(Arc::new(
                s.iter()
                    .map(|v| v.and_then(parse_ipv4).map(i64::from))
                    .collect::<Int64Array>(),
            ))
        },
    },
    // The nine fields come with a mask of which are null (`"010000001"`) and as text with nulls made
    // empty, so that no engine's NULL handling of function arguments can change the record.
    RuleFunction {
        name: "floe_record_json",
        args: 10,
        returns: DataType::Utf8,
        kernel: |a| {
            let mask = strings(a, 0)?;
            let cols: Vec<&StringArray> = (1..a.len()).map(|i| strings(a, i)).collect::<Result<_, _>>()?;
            let out: StringArray = (0..mask.len())
                .map(|i| {
                    let nulls = if mask.is_valid(i) {
                        mask.value(i).as_bytes()
                    } else {
                        b""
                    };
                    let fields: Vec<Option<&str>> = cols
                        .iter()
                        .enumerate()
                        .map(|(k, c)| {
                            let null = nulls.get(k) == Some(&b'1') || !c.is_valid(i);
                            (!null).then(|| c.value(i))
                        })
                        .collect();
                    Some(record_json(&fields))
                })
                .collect();
            Ok(Arc::new(out))
        },
    },
];

/// Argument `i` as text (Utf8; a Utf8View or LargeUtf8 argument is cast first).
fn strings(args: &[ArrayRef], i: usize) -> Result<&StringArray, ArrowError> {
    args.get(i)
        .and_then(|a| a.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| ArrowError::InvalidArgumentError(format!("argument {i} of a floe rule is not text")))
}

fn map_str(args: &[ArrayRef], f: impl Fn(&str) -> Option<String>) -> Result<ArrayRef, ArrowError> {
    let s = strings(args, 0)?;
    Ok(Arc::new(
        s.iter().map(|v| v.and_then(&f)).collect::<StringArray>(),
    ))
}

/// The arguments as Utf8 arrays (engines may hand over views or large strings).
pub fn as_utf8(args: Vec<ArrayRef>) -> Result<Vec<ArrayRef>, ArrowError> {
    args.into_iter()
        .map(|a| match a.data_type() {
            DataType::Utf8 => Ok(a),
            _ => arrow::compute::cast(&a, &DataType::Utf8),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_and_event_types() {
        assert_eq!(trim("\u{3000}\u{a0} a b\t\u{2028}"), "a b");
        assert_eq!(trim("\u{200b}x\u{feff}"), "\u{200b}x\u{feff}");
        assert_eq!(trim("\0x"), "\0x");
        assert_eq!(parse_event_type("  PAGE_View\u{3000}"), Some("page_view"));
        assert_eq!(parse_event_type("clic\u{212a}"), None);
        assert_eq!(parse_event_type("ｃｌｉｃｋ"), None);
        assert_eq!(parse_event_type("purchase\u{200b}"), None);
        assert_eq!(parse_event_type(""), None);
    }

    fn us(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn event_times() {
        assert_eq!(
            parse_event_time("2024-03-01T10:00:00Z"),
            Some(us("2024-03-01T10:00:00Z"))
        );
        assert_eq!(
            parse_event_time(" 2024-03-01T10:00:00 "),
            Some(us("2024-03-01T10:00:00Z"))
        );
        assert_eq!(
            parse_event_time("2024-03-01T23:30:00-01:00"),
            Some(us("2024-03-02T00:30:00Z"))
        );
        assert_eq!(
            parse_event_time("2024-03-01T10:00:00.123456789Z"),
            Some(us("2024-03-01T10:00:00.123456Z"))
        );
        assert_eq!(
            parse_event_time("2024-03-01T10:00:00.5+02:00"),
            Some(us("2024-03-01T08:00:00.5Z"))
        );
        for bad in [
            "2024-02-30T10:00:00Z",
            "2024-03-01 10:00:00Z",
            "2024-03-01T25:00:00Z",
            "2024-03-01T10:00:00.Z",
            "2024-03-01T10:00:00+19:00",
            "2024-03-01T10:00:00+0200",
            "2024-03-01",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_event_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn revenues() {
        assert_eq!(parse_revenue(""), Ok(None));
        assert_eq!(parse_revenue("12.5"), Ok(Some(1250)));
        assert_eq!(parse_revenue(" 12 "), Ok(Some(1200)));
        assert_eq!(parse_revenue("\u{a0}12.30\u{3000}"), Ok(Some(1230)));
        assert_eq!(
            parse_revenue("\u{663}"),
            Err(()),
            "Arabic-Indic digits are not digits here"
        );
        assert_eq!(parse_revenue("\u{ff11}"), Err(()), "nor fullwidth ones");
        assert_eq!(parse_revenue("9999999999.99"), Ok(Some(999_999_999_999)));
        assert_eq!(parse_revenue("0.07"), Ok(Some(7)));
        for bad in [
            "-1.00",
            "1.234",
            "abc",
            ".5",
            "5.",
            "+5",
            "1e3",
            "12345678901",
            " ",
        ] {
            assert_eq!(parse_revenue(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_ipv4("0.0.0.0"), Some(0));
        assert_eq!(parse_ipv4("255.255.255.255"), Some(u32::MAX));
        assert_eq!(parse_ipv4("1.2.3.4"), Some(0x01020304));
        for bad in [
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            " 1.2.3.4",
            "a.b.c.d",
            "1..2.3",
            "",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn record_as_json() {
        let fields = [
            Some("e1"),
            None,
            Some("t"),
            Some("x\"y"),
            None,
            None,
            None,
            None,
            Some(""),
        ];
        assert_eq!(
            record_json(&fields),
            r#"{"event_id":"e1","user_id":null,"event_time":"t","event_type":"x\"y","url":null,"referrer":null,"ip":null,"user_agent":null,"revenue":""}"#
        );
    }
}
