DROP TRIGGER email_search_unindex;
DROP TABLE email_fts;
ALTER TABLE email_search DROP COLUMN fts_docid;
