DROP TRIGGER email_search_unindex;
DROP TABLE email_fts;
-- FTS5 leaves the shadow table of a contentless table's unindexed columns behind.
DROP TABLE IF EXISTS email_fts_content;

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

UPDATE email_search SET fts_docid = NULL;

CREATE TRIGGER email_search_unindex AFTER DELETE ON email_search
WHEN old.fts_docid IS NOT NULL
BEGIN
    DELETE FROM email_fts WHERE rowid = old.fts_docid;
END;
