-- The full-text index (src/store/email_search.rs): a contentless FTS5 table of folded words,
-- keyed by a rowid of our own (VACUUM may renumber email_search's implicit rowids). Emails
-- stored before this migration keep fts_docid NULL until the server indexes them at start.
ALTER TABLE email_search ADD COLUMN fts_docid INTEGER;

-- account_id is indexed: a query intersects its words with the account's rows (email_search.rs).
CREATE VIRTUAL TABLE email_fts USING fts5(
    account_id,
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
    tokenize = 'ascii'
);

-- Emails stored before the index existed, for the backlog job: new ones never enter this index.
CREATE INDEX email_search_unindexed ON email_search (account_id, email_id) WHERE fts_docid IS NULL;

CREATE TRIGGER email_search_unindex AFTER DELETE ON email_search
WHEN old.fts_docid IS NOT NULL
BEGIN
    DELETE FROM email_fts WHERE rowid = old.fts_docid;
END;
