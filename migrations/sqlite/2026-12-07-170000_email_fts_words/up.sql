-- The words of the search index, one row per word (no storage of its own: FTS5 reads them from
-- email_fts). A search lists the words that complete a typed prefix here and asks the index for
-- those words (store::email_search::complete_prefixes).
CREATE VIRTUAL TABLE email_fts_words USING fts5vocab(email_fts, 'row');
