//! Hand-written SQL that SQLite and PostgreSQL keep prepared.
//!
//! Diesel never caches a `sql_query`: it cannot know how many different texts one call site
//! produces. A [`StaticSql`] is a `&'static str`, so the number of texts is bounded by the code and
//! Diesel's statement cache may key on the text. In a profile of `Mailbox/get`, parsing the counts
//! query on every request was the largest share of SQLite's time.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

use super::AnyConnection;

/// A parameter of a [`StaticSql`].
#[derive(Clone, Debug)]
pub enum SqlParam {
    Text(String),
    Int(i64),
}

/// A fixed SQL text with `$1`, `$2`, … placeholders (valid in both dialects) and their values.
#[derive(Debug)]
pub struct StaticSql {
    text: &'static str,
    params: Vec<SqlParam>,
}

impl StaticSql {
    pub fn new(text: &'static str, params: Vec<SqlParam>) -> Self {
        StaticSql { text, params }
    }
}

impl StaticSql {
    /// Runs the statement on either backend for its effect; the number of rows changed.
    pub fn run(self, conn: &mut AnyConnection) -> QueryResult<usize> {
        match conn {
            AnyConnection::Sqlite(c) => self.execute(c),
            AnyConnection::Postgresql(c) => self.execute(c),
        }
    }
}

impl QueryId for StaticSql {
    type QueryId = ();
    // Keyed by its text in the statement cache.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for StaticSql {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for StaticSql {}

impl<DB> QueryFragment<DB> for StaticSql
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    String: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // Each `$n` becomes the backend's own placeholder, bound to the n-th value.
        let mut rest = self.text;
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            let n: usize = match rest[at + 1..at + 1 + digits].parse() {
                Ok(n) => n,
                Err(_) => {
                    out.push_sql(&rest[..=at]);
                    rest = &rest[at + 1..];
                    continue;
                }
            };
            out.push_sql(&rest[..at]);
            match self.params.get(n.wrapping_sub(1)) {
                Some(SqlParam::Text(s)) => out.push_bind_param::<Text, _>(s)?,
                Some(SqlParam::Int(i)) => out.push_bind_param::<BigInt, _>(i)?,
                None => {
                    return Err(diesel::result::Error::QueryBuilderError(
                        format!("no value for ${n}").into(),
                    ));
                }
            }
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::{Connection, QueryableByName, SqliteConnection};

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Text)]
        s: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[test]
    fn placeholders_bind_in_order_and_dollar_words_in_literals_stay_text() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let q = StaticSql::new(
            "SELECT $2 || '$seen' AS s, $1 + 1 AS n",
            vec![SqlParam::Int(41), SqlParam::Text("x".into())],
        );
        let rows: Vec<Row> = q.load(&mut conn).unwrap();
        assert_eq!(
            rows,
            vec![Row {
                s: "x$seen".into(),
                n: 42
            }]
        );
        let missing = StaticSql::new("SELECT $3 AS s, 1 AS n", vec![]);
        assert!(missing.load::<Row>(&mut conn).is_err());
    }
}
