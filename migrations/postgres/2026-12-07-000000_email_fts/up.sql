-- The full-text index (src/store/email_search.rs): the folded words of each field as a tsvector,
-- under one multi-column GIN index that serves a condition on any of them. Emails stored before
-- this migration keep NULL vectors until the server indexes them at start.
ALTER TABLE email_search
    ADD COLUMN from_doc tsvector,
    ADD COLUMN to_doc tsvector,
    ADD COLUMN cc_doc tsvector,
    ADD COLUMN bcc_doc tsvector,
    ADD COLUMN subject_doc tsvector,
    ADD COLUMN body_doc tsvector;

CREATE INDEX email_search_words ON email_search
    USING gin (from_doc, to_doc, cc_doc, bcc_doc, subject_doc, body_doc);

-- Emails stored before the index existed, for the backlog job: new ones never enter this index.
CREATE INDEX email_search_unindexed ON email_search (account_id, email_id) WHERE body_doc IS NULL;
