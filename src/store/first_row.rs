//! `first_row`: Diesel's `first`, with `LIMIT 1` written into the SQL instead of bound.
//!
//! Diesel's `first()` binds the limit as a parameter (`LIMIT ?`). SQLite (3.46 and later) lets a
//! bound LIMIT shape the query plan, so every new binding expires the prepared statement and each
//! execution parses and plans it again: in a profile of `Core/echo` the SQL parser ran on every
//! authentication. A literal `LIMIT 1` keeps the cached statement valid.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::LoadQuery;
use diesel::{QueryResult, RunQueryDsl};

/// A query limited to its first row by a literal `LIMIT 1`.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct FirstRow<Q>(Q);

impl<Q: Query> Query for FirstRow<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> QueryFragment<DB> for FirstRow<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" LIMIT 1");
        Ok(())
    }
}

impl<Q, Conn> RunQueryDsl<Conn> for FirstRow<Q> {}

/// Adds [`first_row`](FirstRowDsl::first_row) to every query without a limit of its own.
pub trait FirstRowDsl: Sized {
    /// The first row, like `first()`: `Err(NotFound)` when there is none.
    fn first_row<'q, U, Conn>(self, conn: &mut Conn) -> QueryResult<U>
    where
        FirstRow<Self>: LoadQuery<'q, Conn, U>,
    {
        FirstRow(self).get_result(conn)
    }
}

impl<Q: Query> FirstRowDsl for Q {}
