-- Email/get without the message (RFC 8621 §4.1.2.3 convenience properties): the header-derived
-- list-view properties (messageId, inReplyTo, references, sender, from, to, cc, bcc, replyTo,
-- subject) as the JSON values Email/get returns, computed at import (src/mail/summary.rs).
-- NULL = not computed yet: Email/get computes it from the message and writes it back.
ALTER TABLE emails ADD COLUMN summary TEXT;

-- Email/get reads the mailboxes of a page of emails by id. An index that holds the mailbox id
-- too answers that from the index alone; with the old (account_id, email_id) index SQLite chose
-- to scan all of an account's memberships instead.
DROP INDEX email_mailboxes_email;
CREATE INDEX email_mailboxes_email ON email_mailboxes (account_id, email_id, mailbox_id);
