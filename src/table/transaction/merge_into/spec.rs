//! What a MERGE does, as data: the `ON` condition joining the target (`t`) to the source (`s`) and
//! the `WHEN` clauses, in order (the first clause whose condition holds for a row wins). Built in
//! code ([`MergeSpec::on`] and its `when_*` methods) or parsed from SQL clause text, as the CLI's
//! `--when "matched and s._op = 'd' then delete"` gives it, with sqlparser's MERGE grammar.

use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, MergeAction, MergeClauseKind, MergeInsertKind, Statement,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::Serialize;

use crate::error::{Error, Result};

/// Column values an update or insert writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Assignments {
    /// `*`: every table column the source has, by name (an update keeps the target's value of a
    /// column the source lacks; an insert writes NULL there).
    All,
    /// `col = expr, ...` (SQL over `t.` and `s.` columns; the other columns keep the target's value
    /// in an update and are NULL in an insert).
    Columns(Vec<(String, String)>),
}

/// One `WHEN` clause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum MergeClause {
    /// `WHEN MATCHED [AND cond] THEN UPDATE ...`
    UpdateMatched {
        /// SQL over `t.` and `s.` columns; `None`: every matched row.
        condition: Option<String>,
        /// The new values.
        set: Assignments,
    },
    /// `WHEN MATCHED [AND cond] THEN DELETE`
    DeleteMatched {
        /// SQL over `t.` and `s.` columns; `None`: every matched row.
        condition: Option<String>,
    },
    /// `WHEN NOT MATCHED [AND cond] THEN INSERT ...`
    InsertNotMatched {
        /// SQL over `s.` columns; `None`: every source row no target row matched.
        condition: Option<String>,
        /// The inserted row's values.
        values: Assignments,
    },
    /// `WHEN NOT MATCHED BY SOURCE [AND cond] THEN DELETE`
    DeleteNotMatchedBySource {
        /// SQL over `t.` columns; `None`: every target row no source row matched.
        condition: Option<String>,
    },
}

/// Which rows a clause is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClauseKind {
    Matched,
    NotMatched,
    NotMatchedBySource,
}

impl MergeClause {
    pub(crate) fn kind(&self) -> ClauseKind {
        match self {
            MergeClause::UpdateMatched { .. } | MergeClause::DeleteMatched { .. } => ClauseKind::Matched,
            MergeClause::InsertNotMatched { .. } => ClauseKind::NotMatched,
            MergeClause::DeleteNotMatchedBySource { .. } => ClauseKind::NotMatchedBySource,
        }
    }

    pub(crate) fn condition(&self) -> Option<&str> {
        match self {
            MergeClause::UpdateMatched { condition, .. }
            | MergeClause::DeleteMatched { condition }
            | MergeClause::InsertNotMatched { condition, .. }
            | MergeClause::DeleteNotMatchedBySource { condition } => condition.as_deref(),
        }
    }

    /// Parse one clause as the CLI takes it, `WHEN` left out: `matched [and COND] then update *`,
    /// `matched then update set a = s.a, b = t.b + 1`, `matched [and COND] then delete`,
    /// `not matched [and COND] then insert *`, `not matched then insert (a, b) values (s.a, 0)`,
    /// `not matched by source [and COND] then delete`.
    pub fn parse(text: &str) -> Result<MergeClause> {
        let spec = MergeSpec::parse("TRUE", &[text])?;
        spec.clauses
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid(format!("invalid merge clause {text:?}")))
    }
}

/// A MERGE: how the target (`t`) and the source (`s`) join, and what happens to each row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergeSpec {
    /// SQL over `t.` and `s.` columns; it must include at least one equality between a target and a
    /// source expression (`t.id = s.id`), which is how rows are matched.
    pub on: String,
    /// The clauses, in order.
    pub clauses: Vec<MergeClause>,
}

/// The placeholder that carries `*` through sqlparser, which has no `UPDATE *` / `INSERT *`.
const ALL: &str = "__floe_all_columns__";

impl MergeSpec {
    /// A MERGE joining on `on`, with no clause yet.
    pub fn on(on: impl Into<String>) -> Self {
        Self {
            on: on.into(),
            clauses: Vec::new(),
        }
    }

    /// Add a clause.
    pub fn when(mut self, clause: MergeClause) -> Self {
        self.clauses.push(clause);
        self
    }

    /// `WHEN MATCHED [AND condition] THEN UPDATE *`.
    pub fn when_matched_update_all(self, condition: Option<&str>) -> Self {
        self.when(MergeClause::UpdateMatched {
            condition: condition.map(str::to_string),
            set: Assignments::All,
        })
    }

    /// `WHEN MATCHED [AND condition] THEN DELETE`.
    pub fn when_matched_delete(self, condition: Option<&str>) -> Self {
        self.when(MergeClause::DeleteMatched {
            condition: condition.map(str::to_string),
        })
    }

    /// `WHEN NOT MATCHED [AND condition] THEN INSERT *`.
    pub fn when_not_matched_insert_all(self, condition: Option<&str>) -> Self {
        self.when(MergeClause::InsertNotMatched {
            condition: condition.map(str::to_string),
            values: Assignments::All,
        })
    }

    /// `WHEN NOT MATCHED BY SOURCE [AND condition] THEN DELETE`.
    pub fn when_not_matched_by_source_delete(self, condition: Option<&str>) -> Self {
        self.when(MergeClause::DeleteNotMatchedBySource {
            condition: condition.map(str::to_string),
        })
    }

    /// Parse `on` and clause texts (each without its `WHEN`) through sqlparser's MERGE grammar.
    pub fn parse(on: &str, clauses: &[&str]) -> Result<MergeSpec> {
        let mut sql = format!("MERGE INTO t USING s ON {on}");
        for c in clauses {
            sql.push_str(" WHEN ");
            sql.push_str(&star_to_placeholder(c));
        }
        let invalid = |why: String| Error::invalid(format!("invalid merge: {why}"));
        let mut statements = Parser::parse_sql(&GenericDialect {}, &sql).map_err(|e| {
            invalid(format!(
                "{e} (in `ON {on}` and the clauses {clauses:?}; a clause reads like `matched and s.op = 'd' then \
                 delete`)"
            ))
        })?;
        let Some(Statement::Merge(merge)) = statements.pop() else {
            return Err(invalid(format!(
                "`ON {on}` and {clauses:?} do not make one MERGE"
            )));
        };
        let mut out = MergeSpec::on(merge.on.to_string());
        for c in merge.clauses {
            let condition = c.predicate.as_ref().map(|p| p.to_string());
            let clause = match (c.clause_kind, c.action) {
                (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                    MergeClause::DeleteMatched { condition }
                }
                (MergeClauseKind::Matched, MergeAction::Update(update)) => {
                    let mut set = Vec::new();
                    for a in update.assignments {
                        let AssignmentTarget::ColumnName(name) = a.target else {
                            return Err(invalid(format!(
                                "cannot assign to a tuple in {c_text}",
                                c_text = a.value
                            )));
                        };
                        set.push((unqualified(&name.to_string()), a.value.to_string()));
                    }
                    let set = if set.len() == 1 && set[0].0 == ALL {
                        Assignments::All
                    } else {
                        Assignments::Columns(set)
                    };
                    MergeClause::UpdateMatched { condition, set }
                }
                (
                    MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                    MergeAction::Insert(insert),
                ) => {
                    let columns: Vec<String> = insert
                        .columns
                        .iter()
                        .map(|c| unqualified(&c.to_string()))
                        .collect();
                    let values = match insert.kind {
                        MergeInsertKind::Values(v) if v.rows.len() == 1 => {
                            v.rows[0].iter().map(|e| e.to_string()).collect::<Vec<_>>()
                        }
                        _ => return Err(invalid("an insert takes one VALUES row, or *".to_string())),
                    };
                    if columns.len() == 1 && columns[0] == ALL {
                        MergeClause::InsertNotMatched {
                            condition,
                            values: Assignments::All,
                        }
                    } else if columns.len() != values.len() {
                        return Err(invalid(format!(
                            "an insert names {} columns but gives {} values",
                            columns.len(),
                            values.len()
                        )));
                    } else {
                        MergeClause::InsertNotMatched {
                            condition,
                            values: Assignments::Columns(columns.into_iter().zip(values).collect()),
                        }
                    }
                }
                (MergeClauseKind::NotMatchedBySource, MergeAction::Delete { .. }) => {
                    MergeClause::DeleteNotMatchedBySource { condition }
                }
                (kind, action) => {
                    return Err(invalid(format!(
                    "`WHEN {kind} THEN {action}` is not a clause floe runs (matched: update or delete; not \
                         matched: insert; not matched by source: delete)"
                )))
                }
            };
            out.clauses.push(clause);
        }
        Ok(out)
    }
}

/// `then update *` / `then insert *` in sqlparser's grammar, with a placeholder column.
fn star_to_placeholder(clause: &str) -> String {
    let trimmed = clause.trim_end();
    let lower = trimmed.to_ascii_lowercase();
    let collapsed: String = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.ends_with("then update *") || collapsed.ends_with("then update set *") {
        let cut = lower.rfind("update").expect("found above");
        format!("{} UPDATE SET {ALL} = 0", &trimmed[..cut])
    } else if collapsed.ends_with("then insert *") {
        let cut = lower.rfind("insert").expect("found above");
        format!("{} INSERT ({ALL}) VALUES (0)", &trimmed[..cut])
    } else {
        trimmed.to_string()
    }
}

/// `t.col` → `col` (assignment targets are the target's columns).
fn unqualified(name: &str) -> String {
    let name = name.strip_prefix("t.").unwrap_or(name);
    name.trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_parse_as_the_cli_gives_them() {
        let spec = MergeSpec::parse(
            "t.id = s.id",
            &[
                "matched and s._op = 'd' then delete",
                "matched then update *",
                "matched and t.v < s.v then update set v = s.v, n = t.n + 1",
                "not matched then insert *",
                "not matched and s.v > 0 then insert (id, v) values (s.id, s.v)",
                "not matched by source and t.v is null then delete",
            ],
        )
        .unwrap();
        assert_eq!(spec.on, "t.id = s.id");
        assert_eq!(
            spec.clauses[0],
            MergeClause::DeleteMatched {
                condition: Some("s._op = 'd'".into())
            }
        );
        assert_eq!(
            spec.clauses[1],
            MergeClause::UpdateMatched {
                condition: None,
                set: Assignments::All
            }
        );
        assert_eq!(
            spec.clauses[2],
            MergeClause::UpdateMatched {
                condition: Some("t.v < s.v".into()),
                set: Assignments::Columns(vec![("v".into(), "s.v".into()), ("n".into(), "t.n + 1".into())])
            }
        );
        assert_eq!(
            spec.clauses[3],
            MergeClause::InsertNotMatched {
                condition: None,
                values: Assignments::All
            }
        );
        assert_eq!(
            spec.clauses[4],
            MergeClause::InsertNotMatched {
                condition: Some("s.v > 0".into()),
                values: Assignments::Columns(vec![("id".into(), "s.id".into()), ("v".into(), "s.v".into())])
            }
        );
        assert_eq!(
            spec.clauses[5],
            MergeClause::DeleteNotMatchedBySource {
                condition: Some("t.v IS NULL".into())
            }
        );
    }

    #[test]
    fn a_clause_that_does_not_parse_is_a_clear_error() {
        let err = MergeSpec::parse("t.id = s.id", &["matched then explode"]).unwrap_err();
        assert!(err.to_string().contains("invalid merge"), "{err}");
        // sqlparser refuses some impossible clauses itself, floe the rest: both are clear errors.
        let err = MergeClause::parse("not matched then delete").unwrap_err();
        assert!(err.to_string().contains("invalid merge"), "{err}");
        let err = MergeClause::parse("not matched by source then insert *").unwrap_err();
        assert!(err.to_string().contains("invalid merge"), "{err}");
    }
}
