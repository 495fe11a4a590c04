//! The column syntax of `floe create --schema` and `floe add-column`:
//! `"id long not null, name string, ts timestamptz, price decimal(12,2)"`, as an Arrow schema.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::error::{Error, Result};

/// Parse a column type: boolean, int, long|bigint, float, double, string, binary, date,
/// timestamp (no zone), timestamptz, decimal(P,S).
pub fn parse_type(text: &str) -> Result<DataType> {
    let t = text.trim().to_ascii_lowercase();
    let dt = match t.as_str() {
        "boolean" | "bool" => DataType::Boolean,
        "int" | "integer" => DataType::Int32,
        "long" | "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "string" | "text" | "varchar" => DataType::Utf8,
        "binary" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        _ => {
            if let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
                let (p, s) = args
                    .split_once(',')
                    .ok_or_else(|| Error::invalid(format!("invalid type {text:?}")))?;
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid(format!("invalid type {text:?}")))?;
                let s: i8 = s
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid(format!("invalid type {text:?}")))?;
                DataType::Decimal128(p, s)
            } else {
                return Err(Error::invalid(format!(
                    "unknown column type {text:?} (boolean, int, long, float, double, string, binary, date, \
                     timestamp, timestamptz, decimal(P,S))"
                )));
            }
        }
    };
    Ok(dt)
}

/// Parse "name type [not null], ..." into an Arrow schema.
pub fn parse_schema(text: &str) -> Result<Schema> {
    let mut fields = Vec::new();
    // Split on commas outside parentheses (decimal(12,2)).
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (name, rest) = part
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::invalid(format!("column {part:?} has no type")))?;
        let rest = rest.trim();
        let lower = rest.to_ascii_lowercase();
        let (ty, nullable) = match lower.strip_suffix("not null") {
            Some(t) => (&rest[..t.len()], false),
            None => (rest, true),
        };
        fields.push(Field::new(name, parse_type(ty)?, nullable));
    }
    if fields.is_empty() {
        return Err(Error::invalid("the schema has no columns"));
    }
    Ok(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_column_syntax() {
        let s = parse_schema("id long not null, price decimal(12,2), ts timestamptz, Name STRING").unwrap();
        assert_eq!(s.fields().len(), 4);
        assert!(!s.field(0).is_nullable());
        assert_eq!(s.field(1).data_type(), &DataType::Decimal128(12, 2));
        assert_eq!(s.field(3).name(), "Name");
        assert!(parse_schema("id").is_err());
        assert!(parse_schema("").is_err());
        assert!(parse_type("decimal(x,2)").is_err());
    }
}
