//! Many rows of one table written in few statements.
//!
//! On PostgreSQL every statement is a round trip and a parse, bind and executor start in the
//! server: an import that wrote each row of each new email on its own spent most of its time on
//! those (BENCHMARKS.md, "PostgreSQL import"). Diesel's multi-row `INSERT` is not available
//! through `MultiConnection`, so [`insert_rows!`] runs it on the concrete backend.

/// Bound parameters per statement: under SQLite's limit (32,766) and PostgreSQL's (65,535).
pub const MAX_PARAMS: usize = 30_000;

/// Rows per statement for a table of `columns` columns.
pub const fn rows_per_statement(columns: usize) -> usize {
    match MAX_PARAMS.checked_div(columns) {
        Some(rows) => rows,
        None => MAX_PARAMS,
    }
}

/// Inserts `$rows` (a slice of `Insertable` rows of `$columns` columns) into `$table` on `$conn`
/// (an [`AnyConnection`](super::AnyConnection)), as few multi-row statements as the parameter
/// limits allow; with `ignore_conflicts`, a row whose key exists is skipped (SQLite's
/// `INSERT OR IGNORE`: Diesel offers no multi-row `ON CONFLICT` there). Evaluates to a
/// `diesel::QueryResult<()>`.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, $columns:expr) => {
        $crate::store::batch_insert::insert_rows!(@each $conn, $rows, $columns, |chunk| {
            diesel::insert_into($table).values(chunk)
        }, |chunk| {
            diesel::insert_into($table).values(chunk)
        })
    };
    ($conn:expr, $table:expr, $rows:expr, $columns:expr, ignore_conflicts) => {
        $crate::store::batch_insert::insert_rows!(@each $conn, $rows, $columns, |chunk| {
            diesel::insert_or_ignore_into($table).values(chunk)
        }, |chunk| {
            diesel::insert_into($table).values(chunk).on_conflict_do_nothing()
        })
    };
    (@each $conn:expr, $rows:expr, $columns:expr,
     |$c1:ident| $sqlite:expr, |$c2:ident| $postgres:expr) => {{
        let per_statement = $crate::store::batch_insert::rows_per_statement($columns);
        let mut result: diesel::QueryResult<()> = Ok(());
        for chunk in $rows.chunks(per_statement) {
            let done = match &mut *$conn {
                $crate::store::AnyConnection::Sqlite(c) => {
                    let $c1 = chunk;
                    diesel::RunQueryDsl::execute($sqlite, c)
                }
                $crate::store::AnyConnection::Postgresql(c) => {
                    let $c2 = chunk;
                    diesel::RunQueryDsl::execute($postgres, c)
                }
            };
            if let Err(e) = done {
                result = Err(e);
                break;
            }
        }
        result
    }};
}

pub(crate) use insert_rows;
