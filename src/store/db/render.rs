//! PostgreSQL's statement text as SQLite reads it.
//!
//! Only these rewrites exist; any other PostgreSQL-only syntax is kept out of shared
//! statements. Row locks have nothing to add on SQLite, where a write transaction holds
//! the whole database (`BEGIN IMMEDIATE`).

/// The statement for SQLite.
pub fn for_sqlite(sql: &str) -> String {
    let mut text = sql
        .replace(" FOR UPDATE SKIP LOCKED", "")
        .replace(" FOR UPDATE", "")
        .replace(" FOR SHARE", "");
    text = set_membership(&text, "= ANY(", "IN (SELECT value FROM json_each(");
    set_membership(&text, "<> ALL(", "NOT IN (SELECT value FROM json_each(")
}

/// `= ANY($n)` → `IN (SELECT value FROM json_each($n))`; the set is bound as JSON.
fn set_membership(sql: &str, pattern: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(at) = rest.find(pattern) {
        out.push_str(&rest[..at]);
        let after = &rest[at + pattern.len()..];
        let close = after.find(')').unwrap_or(after.len());
        out.push_str(replacement);
        out.push_str(&after[..close]);
        out.push_str("))");
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_locks_are_dropped() {
        assert_eq!(
            for_sqlite("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE"),
            "SELECT 1 FROM jobs WHERE id = $1"
        );
        assert_eq!(
            for_sqlite("SELECT id FROM outbox LIMIT 5 FOR UPDATE SKIP LOCKED) AND x"),
            "SELECT id FROM outbox LIMIT 5) AND x"
        );
        assert_eq!(
            for_sqlite("SELECT 1 FROM accounts FOR SHARE"),
            "SELECT 1 FROM accounts"
        );
    }

    #[test]
    fn set_membership_reads_the_json_array() {
        assert_eq!(
            for_sqlite("WHERE status = ANY($4) AND x AND (status <> ALL($5) OR y)"),
            "WHERE status IN (SELECT value FROM json_each($4)) AND x \
             AND (status NOT IN (SELECT value FROM json_each($5)) OR y)"
        );
    }

    #[test]
    fn a_statement_without_postgres_clauses_is_unchanged() {
        let sql = "UPDATE jobs SET a = $1 WHERE id = $2 RETURNING id";
        assert_eq!(for_sqlite(sql), sql);
    }
}
