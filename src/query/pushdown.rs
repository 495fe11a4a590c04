//! The part of a `floe sql` query's WHERE clause that floe's Iceberg scan can apply before DuckDB
//! sees the rows: comparisons of one table's columns with literals, pushed as a floe row filter so
//! that partitions, files and row groups the query cannot match are never read from storage.
//!
//! The pushed filter is always implied by the query's own WHERE (a conjunct that cannot be pushed is
//! left out, an `OR` is pushed only whole), and DuckDB still evaluates the whole query on what the
//! scan returns, so pushing changes what is read, never the answer. Nothing is pushed unless the
//! table occurs exactly once in the query, in the FROM of a SELECT whose joins are all inner: an
//! outer, semi or anti join, a second reference (a self-join, a subquery over the same table) or a
//! query that does not parse as DuckDB SQL reads the table unfiltered, as before.

use arrow::datatypes::{DataType, Schema};
use chrono::{NaiveDate, NaiveDateTime};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement,
    TableFactor, TableWithJoins, UnaryOperator, Value, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::DuckDbDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// The row filter (DataFusion SQL over `schema`'s column names) implied by `query`'s WHERE for the
/// table the query names as `name_parts` (`["ns", "t"]` for `ns.t`, `["ns.t@ref"]` for a quoted
/// `"ns.t@ref"`), or `None` when nothing can be pushed.
pub(crate) fn pushed_filter(query: &str, name_parts: &[&str], schema: &Schema) -> Option<String> {
    let statements = Parser::parse_sql(&DuckDbDialect {}, query).ok()?;
    let [Statement::Query(q)] = statements.as_slice() else {
        return None;
    };
    let mut count = Occurrences {
        parts: name_parts,
        found: 0,
    };
    let _ = q.visit(&mut count);
    if count.found != 1 {
        return None;
    }
    let (select, qualifier) = find_in_query(q, name_parts)?;
    let table = TableColumns { schema, qualifier };
    table.weaken(select.selection.as_ref()?)
}

/// Counts the relations named like the table.
struct Occurrences<'a> {
    parts: &'a [&'a str],
    found: usize,
}

impl Visitor for Occurrences<'_> {
    type Break = ();
    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if names_table(relation, self.parts) {
            self.found += 1;
        }
        ControlFlow::Continue(())
    }
}

fn names_table(name: &ObjectName, parts: &[&str]) -> bool {
    name.0.len() == parts.len()
        && name.0.iter().zip(parts).all(|(p, want)| match p {
            ObjectNamePart::Identifier(i) => i.value.eq_ignore_ascii_case(want),
            _ => false,
        })
}

/// The SELECT whose FROM names the table, with the name its columns may be qualified by.
fn find_in_query<'q>(query: &'q Query, parts: &[&str]) -> Option<(&'q Select, String)> {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            if let Some(found) = find_in_query(&cte.query, parts) {
                return Some(found);
            }
        }
    }
    find_in_set_expr(&query.body, parts)
}

fn find_in_set_expr<'q>(body: &'q SetExpr, parts: &[&str]) -> Option<(&'q Select, String)> {
    match body {
        SetExpr::Select(select) => find_in_select(select, parts),
        SetExpr::Query(q) => find_in_query(q, parts),
        SetExpr::SetOperation { left, right, .. } => {
            find_in_set_expr(left, parts).or_else(|| find_in_set_expr(right, parts))
        }
        _ => None,
    }
}

fn find_in_select<'q>(select: &'q Select, parts: &[&str]) -> Option<(&'q Select, String)> {
    for from in &select.from {
        let relations = std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation));
        for relation in relations {
            match relation {
                TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } if names_table(name, parts) => {
                    if !all_inner(from) {
                        return None;
                    }
                    let qualifier = match alias {
                        Some(a) => a.name.value.clone(),
                        None => parts.last().map(|p| p.to_string()).unwrap_or_default(),
                    };
                    return Some((select, qualifier));
                }
                TableFactor::Derived { subquery, .. } => {
                    if let Some(found) = find_in_query(subquery, parts) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// Whether every join of a FROM item keeps exactly the rows its WHERE keeps (no row of the table is
/// null-extended, kept for its absence, or matched by existence only).
fn all_inner(from: &TableWithJoins) -> bool {
    from.joins.iter().all(|j| {
        matches!(
            j.join_operator,
            JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
        )
    })
}

/// The table's columns, as the query may name them.
struct TableColumns<'a> {
    schema: &'a Schema,
    qualifier: String,
}

/// A literal of the kind a column holds, as the pushed filter writes it.
enum Literal {
    Integer(i128),
    Text(String),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
}

impl TableColumns<'_> {
    /// A filter implied by `expr`: the conjuncts of an AND that can be pushed, an OR whose every side
    /// can, a comparison of a column with a literal of its kind.
    fn weaken(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Nested(inner) => self.weaken(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => match (self.weaken(left), self.weaken(right)) {
                (Some(l), Some(r)) => Some(format!("({l}) AND ({r})")),
                (one, other) => one.or(other),
            },
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => Some(format!("({}) OR ({})", self.weaken(left)?, self.weaken(right)?)),
            Expr::BinaryOp { left, op, right } => self.comparison(left, op, right),
            Expr::IsNull(e) => Some(format!("{} IS NULL", self.column(e)?.0)),
            Expr::IsNotNull(e) => Some(format!("{} IS NOT NULL", self.column(e)?.0)),
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } => {
                let (col, ty) = self.column(expr)?;
                let (low, high) = (literal(low, ty)?, literal(high, ty)?);
                Some(format!("{col} BETWEEN {} AND {}", low.sql(), high.sql()))
            }
            Expr::InList {
                expr,
                list,
                negated: false,
            } => {
                let (col, ty) = self.column(expr)?;
                if list.is_empty() {
                    return None;
                }
                let values = list
                    .iter()
                    .map(|v| literal(v, ty).map(|l| l.sql()))
                    .collect::<Option<Vec<_>>>()?;
                Some(format!("{col} IN ({})", values.join(", ")))
            }
            _ => None,
        }
    }

    fn comparison(&self, left: &Expr, op: &BinaryOperator, right: &Expr) -> Option<String> {
        let (column, value, op) = match self.column(left) {
            Some(c) => (c, right, op.clone()),
            None => (self.column(right)?, left, flipped(op)?),
        };
        let (col, ty) = column;
        let value = literal(value, ty)?;
        let op = match op {
            BinaryOperator::Eq => "=",
            BinaryOperator::NotEq => "<>",
            BinaryOperator::Lt => "<",
            BinaryOperator::LtEq => "<=",
            BinaryOperator::Gt => ">",
            BinaryOperator::GtEq => ">=",
            _ => return None,
        };
        Some(format!("{col} {op} {}", value.sql()))
    }

    /// The table's column `expr` names (quoted for the filter) and its type.
    fn column(&self, expr: &Expr) -> Option<(String, &DataType)> {
        let name = match expr {
            Expr::Nested(inner) => return self.column(inner),
            Expr::Identifier(i) => &i.value,
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, c] if q.value.eq_ignore_ascii_case(&self.qualifier) => &c.value,
                _ => return None,
            },
            _ => return None,
        };
        // DuckDB matches identifiers case-insensitively: exactly one column may match.
        let mut matching = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.name().eq_ignore_ascii_case(name));
        let field = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        Some((
            format!("\"{}\"", field.name().replace('"', "\"\"")),
            field.data_type(),
        ))
    }
}

/// `a op b` as `b op' a`.
fn flipped(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::NotEq => BinaryOperator::NotEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        _ => return None,
    })
}

/// `expr` as a literal of a column of type `ty`: integers for integer columns, strings for text,
/// dates and timestamps. Floating point, decimal and other columns take no literal (NaN and
/// rounding order differently across engines): only their IS [NOT] NULL is pushed.
fn literal(expr: &Expr, ty: &DataType) -> Option<Literal> {
    let (text, negative) = match expr {
        Expr::Nested(inner) => return literal(inner, ty),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => (n.to_string(), true),
                _ => return None,
            },
            _ => return None,
        },
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => (n.to_string(), false),
            Value::SingleQuotedString(s) => (s.clone(), false),
            _ => return None,
        },
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => (s.clone(), false),
            _ => return None,
        },
        _ => return None,
    };
    let is_number = matches!(expr, Expr::UnaryOp { .. })
        || matches!(expr, Expr::Value(v) if matches!(v.value, Value::Number(..)));
    match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
            if is_number =>
        {
            let n: i128 = text.parse().ok()?;
            Some(Literal::Integer(if negative { -n } else { n }))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            if !is_number && matches!(expr, Expr::Value(_)) =>
        {
            Some(Literal::Text(text))
        }
        DataType::Date32 | DataType::Date64 if !is_number => {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .map(Literal::Date)
        }
        // floe sql's session is in UTC, as DataFusion reads a literal without an offset; a literal
        // with an offset is taken to UTC, and is not pushed against a column without a zone.
        DataType::Timestamp(_, zone) if !is_number => match timestamp(text.trim())? {
            (t, false) => Some(Literal::Timestamp(t)),
            (t, true) if zone.is_some() => Some(Literal::Timestamp(t)),
            _ => None,
        },
        _ => None,
    }
}

/// A timestamp literal as DuckDB reads it (date, date and time, optional fraction and offset), in
/// UTC, and whether it carried an offset.
fn timestamp(text: &str) -> Option<(NaiveDateTime, bool)> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some((d.and_hms_opt(0, 0, 0)?, false));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some((t, false));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(text, format) {
            return Some((t.naive_utc(), true));
        }
    }
    let utc = text.strip_suffix('Z').or_else(|| text.strip_suffix(" UTC"))?;
    timestamp(utc).map(|(t, _)| (t, true))
}

impl Literal {
    fn sql(&self) -> String {
        match self {
            Literal::Integer(n) => n.to_string(),
            Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Literal::Date(d) => format!("'{}'", d.format("%Y-%m-%d")),
            Literal::Timestamp(t) => format!("'{}'", t.format("%Y-%m-%dT%H:%M:%S%.6f")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("Country", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Field::new("revenue", DataType::Float64, true),
        ])
    }

    fn pushed(query: &str) -> Option<String> {
        pushed_filter(query, &["ns", "t"], &schema())
    }

    #[test]
    fn pushes_comparisons_with_literals_of_the_columns_kind() {
        assert_eq!(
            pushed("SELECT count(*) FROM ns.t WHERE id >= 5 AND country = 'F''R'").as_deref(),
            Some(r#"("id" >= 5) AND ("Country" = 'F''R')"#)
        );
        assert_eq!(
            pushed("SELECT * FROM ns.t x WHERE 5 > x.id OR x.day BETWEEN '2024-01-01' AND DATE '2024-01-31'")
                .as_deref(),
            Some(r#"("id" < 5) OR ("day" BETWEEN '2024-01-01' AND '2024-01-31')"#)
        );
        assert_eq!(
            pushed("SELECT id FROM ns.t WHERE id IN (1, -2) AND revenue IS NOT NULL").as_deref(),
            Some(r#"("id" IN (1, -2)) AND ("revenue" IS NOT NULL)"#)
        );
        // Timestamps are UTC; an offset is taken to UTC.
        assert_eq!(
            pushed("SELECT id FROM ns.t WHERE event_time >= '2024-03-01 01:00:00+02' AND event_time < '2024-03-02'")
                .as_deref(),
            Some(r#"("event_time" >= '2024-02-29T23:00:00.000000') AND ("event_time" < '2024-03-02T00:00:00.000000')"#)
        );
    }

    #[test]
    fn leaves_out_what_it_cannot_prove() {
        // A conjunct it cannot push is left out; an OR with one is not pushed at all.
        assert_eq!(
            pushed("SELECT id FROM ns.t WHERE lower(country) = 'fr' AND id = 3").as_deref(),
            Some(r#""id" = 3"#)
        );
        assert_eq!(
            pushed("SELECT id FROM ns.t WHERE lower(country) = 'fr' OR id = 3"),
            None
        );
        // Literals of another kind, floats, NOT, and columns of other tables.
        assert_eq!(pushed("SELECT id FROM ns.t WHERE id = '3'"), None);
        assert_eq!(pushed("SELECT id FROM ns.t WHERE revenue > 1.5"), None);
        assert_eq!(pushed("SELECT id FROM ns.t WHERE NOT (id = 3)"), None);
        assert_eq!(pushed("SELECT id FROM ns.t JOIN o ON true WHERE o.id = 3"), None);
        // Outer joins, two references, and what does not parse read the table whole.
        assert_eq!(
            pushed("SELECT id FROM o LEFT JOIN ns.t ON o.k = t.id WHERE t.id = 3"),
            None
        );
        assert_eq!(
            pushed("SELECT id FROM ns.t WHERE id = (SELECT max(id) FROM ns.t)"),
            None
        );
        assert_eq!(pushed("SELECT id FROM ns.t WHERE id = 3; SELECT 1"), None);
        assert_eq!(pushed("not sql at all"), None);
    }

    #[test]
    fn finds_the_table_in_subqueries_ctes_and_unions() {
        assert_eq!(
            pushed("WITH d AS (SELECT * FROM ns.t WHERE id = 1) SELECT count(*) FROM d").as_deref(),
            Some(r#""id" = 1"#)
        );
        assert_eq!(
            pushed("SELECT 1 UNION ALL SELECT id FROM (SELECT id FROM ns.t WHERE id < 0)").as_deref(),
            Some(r#""id" < 0"#)
        );
        assert_eq!(
            pushed_filter(
                r#"SELECT id FROM "ns.t@main" WHERE id = 1"#,
                &["ns.t@main"],
                &schema()
            )
            .as_deref(),
            Some(r#""id" = 1"#)
        );
    }
}
