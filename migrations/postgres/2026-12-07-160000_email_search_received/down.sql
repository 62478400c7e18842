ALTER TABLE email_search DROP COLUMN received_at;
