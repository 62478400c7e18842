-- Every indexed word now carries its account's key (src/mail/search.rs fts5_account_key), so the
-- account is no longer a column: a search reads the account's own word lists instead of
-- intersecting them with the list of all the account's emails. The tokenizer keeps `-` and `_`
-- inside words, where the keys put them.
--
-- The index is rebuilt: every email is unindexed here and indexed again by the server's
-- background job at start (email_search.rs index_backlog, which logs its progress).
DROP TRIGGER email_search_unindex;
DROP TABLE email_fts;
-- FTS5 leaves the shadow table of a contentless table's unindexed columns behind.
DROP TABLE IF EXISTS email_fts_content;

CREATE VIRTUAL TABLE email_fts USING fts5(
    email_id UNINDEXED,
    from_text,
    to_text,
    cc_text,
    bcc_text,
    subject_text,
    body_text,
    content = '',
    contentless_delete = 1,
    contentless_unindexed = 1,
    tokenize = "ascii tokenchars '-_'"
);

UPDATE email_search SET fts_docid = NULL;

CREATE TRIGGER email_search_unindex AFTER DELETE ON email_search
WHEN old.fts_docid IS NOT NULL
BEGIN
    DELETE FROM email_fts WHERE rowid = old.fts_docid;
END;
