DROP TABLE email_fts_words;
