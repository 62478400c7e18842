//! SQLite: typed prefixes completed from the index's own words, so that FTS5 reads whole
//! words (see [`complete_prefixes`]).

use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::jmap::methods::email_query::Filter;
use crate::mail::search::{self, SearchTerm};
use crate::store::static_sql::{SqlParam, StaticSql};
use crate::store::{AnyConnection, StoreError};

/// The most completions a prefix is asked as (itself and 15 longer words); a prefix with more
/// is left to the index as a prefix.
const MAX_COMPLETIONS: usize = 16;

/// SQLite: lists, for each prefix term of `filter`, the account's indexed words that complete
/// it ([`SearchTerm::completions`]), so that the index is asked for those words: the same
/// matches. Only when a prefix has at most [`MAX_COMPLETIONS`].
/// Runs in the query's transaction, so the words listed are those of the emails the query sees.
///
/// Why: FTS5 answers a prefix by merging the row lists of all the words that complete it into
/// one list in memory, positions included, before any other term can narrow it; a rare word AND
/// two common prefixes read two million rows (369 ms at a million emails). Asked for whole
/// words, it reads each list only around the rows the rarest term allows (64 ms, most of it
/// listing `team`'s thirteen longer words), and even a lone common prefix is cheaper as whole
/// words (`team`: count 143 → 91 ms).
pub fn complete_prefixes(
    conn: &mut AnyConnection,
    account_id: &str,
    filter: &mut Filter,
) -> Result<(), StoreError> {
    #[derive(QueryableByName)]
    struct Word {
        #[diesel(sql_type = Text)]
        term: String,
    }
    let AnyConnection::Sqlite(c) = conn else {
        return Ok(());
    };
    let mut terms = Vec::new();
    filter_terms(filter, &mut terms);
    let key = search::fts5_account_key(account_id);
    for term in terms.into_iter().filter(|t| t.prefix) {
        let Some(last) = term.words.last() else {
            continue;
        };
        // The word itself always completes it (if it is not indexed, it matches nothing), so
        // only the longer ones are listed: fts5vocab counts the rows of every word it visits,
        // and the typed word is often the commonest (`hello`: 19 ms at a million). They sort
        // from the word followed by U+0001 (no word holds a control character) to the word
        // followed by the last code point.
        let low = format!("{key}{last}\u{1}");
        let high = format!("{key}{last}\u{10FFFF}");
        // MAX_COMPLETIONS longer words are one too many. A literal: SQLite re-plans a bound LIMIT.
        let longer: Vec<Word> = StaticSql::new(
            "SELECT term FROM email_fts_words WHERE term >= $1 AND term < $2 LIMIT 16",
            vec![SqlParam::Text(low), SqlParam::Text(high)],
        )
        .load(c)?;
        if longer.len() >= MAX_COMPLETIONS {
            continue;
        }
        term.completions = std::iter::once(last.clone())
            .chain(
                longer
                    .into_iter()
                    .filter_map(|w| w.term.strip_prefix(&key).map(str::to_owned)),
            )
            .collect();
    }
    Ok(())
}

/// Every search term in `filter`, at any depth.
fn filter_terms<'f>(filter: &'f mut Filter, out: &mut Vec<&'f mut SearchTerm>) {
    match filter {
        Filter::Operator(_, parts) => {
            for p in parts {
                filter_terms(p, out);
            }
        }
        Filter::Condition(c) => {
            for t in c.search_texts_mut().into_iter().flatten() {
                out.extend(t.terms.iter_mut());
            }
        }
    }
}
