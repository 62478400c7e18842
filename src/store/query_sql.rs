//! Statements built at run time: SQL text with `$n` placeholders and the values to bind, run
//! on whichever backend the connection is. `$n` parameters are numbered in order of appearance
//! and never reused, a form both SQLite and PostgreSQL accept.

use super::AnyConnection;

/// The SQL dialect a statement is built for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of(conn: &AnyConnection) -> Dialect {
        match conn {
            AnyConnection::Sqlite(_) => Dialect::Sqlite,
            AnyConnection::Postgresql(_) => Dialect::Postgres,
        }
    }
}

/// A bound parameter.
#[derive(Clone, Debug)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// A statement being built: text with `$n` placeholders and their values.
#[derive(Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Param>,
    /// Which database the statement is for, where the SQL differs (text search).
    pub dialect: Dialect,
    /// For an Email/query statement: how its top-level text condition uses the text index
    /// ([`super::email_query`] decides).
    pub text_plan: TextPlan,
}

/// How an Email/query statement uses the text index for the text condition at its top level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextPlan {
    /// Like any text condition: a list of the ids of the matching emails, each email in the
    /// walk checked against it (cheap when few match).
    #[default]
    MatchList,
    /// Start from the matches, sorted (few match).
    FromMatches,
    /// Walk the emails in sort order and check each one's index row against the matches, so
    /// that the walk stops when the window is full (many match).
    CheckEachEmail,
    /// Walk the emails in sort order and ask the index about each one's row alone: for a walk
    /// that stops after few emails, because most of them match.
    AskForEachEmail,
}

impl Sql {
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    pub fn text(&mut self, v: impl Into<String>) -> &mut Self {
        self.params.push(Param::Text(v.into()));
        let n = self.params.len();
        self.text.push_str(&format!("${n}"));
        self
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.params.push(Param::Int(v));
        let n = self.params.len();
        self.text.push_str(&format!("${n}"));
        self
    }
}

impl Sql {
    /// An empty statement for `dialect`.
    pub fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            ..Sql::default()
        }
    }
}

/// `diesel::sql_query` of `sql` with its parameters bound, boxed for the backend at hand.
macro_rules! bound {
    ($sql:expr) => {{
        use diesel::sql_types::{BigInt, Text};
        use $crate::store::query_sql::Param;
        let sql: &$crate::store::query_sql::Sql = $sql;
        let mut q = diesel::sql_query(sql.text.as_str()).into_boxed();
        for p in &sql.params {
            q = match p {
                // By reference: a text may be a message's whole search text.
                Param::Text(s) => q.bind::<Text, _>(s.as_str()),
                Param::Int(i) => q.bind::<BigInt, _>(*i),
            };
        }
        q
    }};
}

/// Runs `$run(query, connection)` with `sql` bound on the concrete backend of `$conn` (an
/// [`AnyConnection`]): raw SQL does not go through diesel's `MultiConnection`.
macro_rules! on_backend {
    ($conn:expr, $sql:expr, $run:expr) => {{
        match $conn {
            $crate::store::AnyConnection::Sqlite(c) => {
                $run($crate::store::query_sql::bound!($sql), c)
            }
            $crate::store::AnyConnection::Postgresql(c) => {
                $run($crate::store::query_sql::bound!($sql), c)
            }
        }
    }};
}

/// Runs `sql` (a [`Sql`]) on `$conn` and loads rows of `$row` (a `QueryableByName`).
macro_rules! load {
    ($conn:expr, $sql:expr, $row:ty) => {
        $crate::store::query_sql::on_backend!($conn, $sql, |q, c| {
            diesel::RunQueryDsl::load::<$row>(q, c)
        })
    };
}

/// Runs `sql` on `$conn` for its effect; the number of rows changed.
macro_rules! execute {
    ($conn:expr, $sql:expr) => {
        $crate::store::query_sql::on_backend!($conn, $sql, |q, c| diesel::RunQueryDsl::execute(
            q, c
        ))
    };
}

pub(crate) use {bound, execute, load, on_backend};
