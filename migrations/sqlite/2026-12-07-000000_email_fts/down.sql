DROP TRIGGER email_search_unindex;
DROP TABLE email_fts;
DROP INDEX email_search_unindexed;
ALTER TABLE email_search DROP COLUMN fts_docid;
