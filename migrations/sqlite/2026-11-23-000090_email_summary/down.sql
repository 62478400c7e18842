DROP INDEX email_mailboxes_email;
CREATE INDEX email_mailboxes_email ON email_mailboxes (account_id, email_id);
ALTER TABLE emails DROP COLUMN summary;
