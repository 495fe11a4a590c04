//! The column syntax of `floe create --schema` and `floe schema add`:
//! `"id long not null, name string, price decimal(12,2), props struct<browser: string, os: string>,
//! tags list<string>, attrs map<string, long>, key uuid, at time, digest fixed[16]"`, parsed into
//! Iceberg types (nesting allowed) or an Arrow schema; and the same syntax printed back.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType, StructType, Type};

use crate::error::{Error, Result};

const TYPES: &str =
    "boolean, int, long, float, double, string, binary, date, time, timestamp, timestamptz, uuid, \
                     decimal(P,S), fixed[N], struct<name: type, ...>, list<type>, map<type, type>";

/// Parse a column type as an Arrow type.
pub fn parse_type(text: &str) -> Result<DataType> {
    crate::table::schema_update::tree::arrow_type_of(&parse_field_type(text)?)
}

/// Parse a column type as an Iceberg type (nested field ids numbered from 1; a schema change
/// gives them fresh ids).
pub fn parse_field_type(text: &str) -> Result<Type> {
    let mut p = Parser {
        text,
        pos: 0,
        next_id: 0,
    };
    let t = p.field_type()?;
    p.end()?;
    Ok(t)
}

/// Parse "name type [not null], ..." into an Arrow schema (field ids are assigned when the table
/// is created; uuid columns carry Arrow's `arrow.uuid` extension name, so they stay uuid).
pub fn parse_schema(text: &str) -> Result<Schema> {
    let mut p = Parser {
        text,
        pos: 0,
        next_id: 0,
    };
    let mut fields = Vec::new();
    if !p.at_end() {
        loop {
            fields.push(p.field(false)?);
            if !p.eat(",") {
                break;
            }
        }
    }
    p.end()?;
    if fields.is_empty() {
        return Err(Error::invalid("the schema has no columns"));
    }
    let schema = iceberg::spec::Schema::builder()
        .with_fields(fields.into_iter().map(Arc::new))
        .build()
        .map_err(|e| Error::invalid(format!("invalid schema {text:?}: {}", e.message())))?;
    let arrow = iceberg::arrow::schema_to_arrow_schema(&schema)?;
    Ok(crate::table::uuid_columns::mark_uuid_fields(&schema, arrow))
}

/// A type in this syntax: `long`, `decimal(12,2)`, `struct<a: int not null, b: list<string>>`.
pub fn type_text(t: &Type) -> String {
    let field = |f: &NestedField| {
        format!(
            "{}: {}{}",
            f.name,
            type_text(&f.field_type),
            if f.required { " not null" } else { "" }
        )
    };
    match t {
        Type::Primitive(PrimitiveType::Decimal { precision, scale }) => {
            format!("decimal({precision},{scale})")
        }
        Type::Primitive(PrimitiveType::Fixed(n)) => format!("fixed[{n}]"),
        Type::Primitive(p) => p.to_string(),
        Type::Struct(s) => format!(
            "struct<{}>",
            s.fields().iter().map(|f| field(f)).collect::<Vec<_>>().join(", ")
        ),
        Type::List(l) => format!("list<{}>", type_text(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{}, {}>",
            type_text(&m.key_field.field_type),
            type_text(&m.value_field.field_type)
        ),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    next_id: i32,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.rest().is_empty()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        let matches = self
            .rest()
            .get(..token.len())
            .is_some_and(|r| r.eq_ignore_ascii_case(token));
        if matches {
            self.pos += token.len();
        }
        matches
    }

    fn expect(&mut self, token: &str) -> Result<()> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {token:?}")))
        }
    }

    fn end(&mut self) -> Result<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("unexpected text"))
        }
    }

    fn error(&self, what: &str) -> Error {
        Error::invalid(format!(
            "invalid type or schema {:?}: {what} at {:?} (types: {TYPES})",
            self.text,
            self.rest()
        ))
    }

    /// A name or a type keyword.
    fn word(&mut self) -> Result<String> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '$'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a name"));
        }
        let w = self.rest()[..len].to_string();
        self.pos += len;
        Ok(w)
    }

    fn number(&mut self) -> Result<u64> {
        let w = self.word()?;
        w.parse()
            .map_err(|_| self.error(&format!("{w:?} is not a number")))
    }

    fn id(&mut self) -> i32 {
        self.next_id += 1;
        self.next_id
    }

    /// `name type [not null]` (`name: type` inside a struct).
    fn field(&mut self, in_struct: bool) -> Result<NestedField> {
        let name = self.word()?;
        if !self.eat(":") && in_struct {
            return Err(self.error("expected \":\" after a struct field's name"));
        }
        let id = self.id();
        let t = self.field_type()?;
        let required = self.eat("not null");
        Ok(NestedField::new(id, name, t, required))
    }

    fn field_type(&mut self) -> Result<Type> {
        let word = self.word()?.to_ascii_lowercase();
        let p = match word.as_str() {
            "boolean" | "bool" => PrimitiveType::Boolean,
            "int" | "integer" => PrimitiveType::Int,
            "long" | "bigint" => PrimitiveType::Long,
            "float" => PrimitiveType::Float,
            "double" => PrimitiveType::Double,
            "string" | "text" | "varchar" => PrimitiveType::String,
            "binary" => PrimitiveType::Binary,
            "date" => PrimitiveType::Date,
            "time" => PrimitiveType::Time,
            "timestamp" => PrimitiveType::Timestamp,
            "timestamptz" => PrimitiveType::Timestamptz,
            "uuid" => PrimitiveType::Uuid,
            "decimal" => {
                self.expect("(")?;
                let precision = self.number()? as u32;
                self.expect(",")?;
                let scale = self.number()? as u32;
                self.expect(")")?;
                return Type::decimal(precision, scale).map_err(|e| self.error(e.message()));
            }
            "fixed" => {
                self.expect("[")?;
                let n = self.number()?;
                self.expect("]")?;
                PrimitiveType::Fixed(n)
            }
            "struct" => return self.struct_type(),
            "list" => {
                self.expect("<")?;
                let id = self.id();
                let element = self.field_type()?;
                self.expect(">")?;
                return Ok(Type::List(ListType::new(Arc::new(NestedField::list_element(
                    id, element, false,
                )))));
            }
            "map" => {
                self.expect("<")?;
                let key_id = self.id();
                let key = self.field_type()?;
                self.expect(",")?;
                let value_id = self.id();
                let value = self.field_type()?;
                self.expect(">")?;
                return Ok(Type::Map(MapType::new(
                    Arc::new(NestedField::map_key_element(key_id, key)),
                    Arc::new(NestedField::map_value_element(value_id, value, false)),
                )));
            }
            other => return Err(self.error(&format!("unknown column type {other:?}"))),
        };
        Ok(Type::Primitive(p))
    }

    fn struct_type(&mut self) -> Result<Type> {
        self.expect("<")?;
        let mut fields = Vec::new();
        loop {
            fields.push(Arc::new(self.field(true)?));
            if !self.eat(",") {
                break;
            }
        }
        self.expect(">")?;
        Ok(Type::Struct(StructType::new(fields)))
    }
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

    #[test]
    fn parses_nested_types_and_prints_them_back() {
        let text =
            "struct<browser: string, os: string not null, tags: list<int>, attrs: map<string, fixed[16]>>";
        let t = parse_field_type(text).unwrap();
        assert_eq!(type_text(&t), text);
        assert_eq!(type_text(&parse_field_type("uuid").unwrap()), "uuid");
        assert_eq!(type_text(&parse_field_type("time").unwrap()), "time");
        let s =
            parse_schema("id long not null, props struct<a: int>, tags list<string>, m map<string, long>")
                .unwrap();
        assert_eq!(s.fields().len(), 4);
        assert!(parse_field_type("struct<a int>").is_err());
        assert!(parse_field_type("list<int").is_err());
    }
}
