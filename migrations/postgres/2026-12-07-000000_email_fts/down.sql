DROP INDEX email_search_words;
ALTER TABLE email_search
    DROP COLUMN from_doc,
    DROP COLUMN to_doc,
    DROP COLUMN cc_doc,
    DROP COLUMN bcc_doc,
    DROP COLUMN subject_doc,
    DROP COLUMN body_doc;
