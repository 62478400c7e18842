-- Email (RFC 8621 §4): what Email/query, sorting, threading and search need, filled in once at
-- import (messages are immutable). See the doc comment of src/store/email.rs.
ALTER TABLE emails ADD COLUMN sent_at BIGINT;
ALTER TABLE emails ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN base_subject TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN from_sort TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN to_sort TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN has_attachment BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE emails ADD COLUMN preview TEXT NOT NULL DEFAULT '';
CREATE INDEX emails_sent ON emails (account_id, sent_at, id);
CREATE INDEX emails_size ON emails (account_id, size, id);
CREATE INDEX emails_base_subject ON emails (account_id, base_subject, id);
CREATE INDEX emails_from_sort ON emails (account_id, from_sort, id);
CREATE INDEX emails_to_sort ON emails (account_id, to_sort, id);

-- receivedAt copied into each membership (it never changes), so `inMailbox` + sort by receivedAt
-- is one index range scan.
ALTER TABLE email_mailboxes ADD COLUMN received_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX email_mailboxes_received
    ON email_mailboxes (account_id, mailbox_id, received_at, email_id);

-- Searchable text (RFC 8621 §4.4.1 text/from/to/cc/bcc/subject/body), decoded.
CREATE TABLE email_search (
    account_id   TEXT NOT NULL,
    email_id     TEXT NOT NULL,
    from_text    TEXT NOT NULL,
    to_text      TEXT NOT NULL,
    cc_text      TEXT NOT NULL,
    bcc_text     TEXT NOT NULL,
    subject_text TEXT NOT NULL,
    body_text    TEXT NOT NULL,
    PRIMARY KEY (account_id, email_id),
    FOREIGN KEY (account_id, email_id) REFERENCES emails (account_id, id) ON DELETE CASCADE
);

-- Threading (RFC 8621 §3): every id of an email's Message-ID (is_own), In-Reply-To and References.
CREATE TABLE email_message_ids (
    account_id TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    email_id   TEXT    NOT NULL,
    thread_id  TEXT    NOT NULL,
    is_own     BOOLEAN NOT NULL,
    PRIMARY KEY (account_id, message_id, email_id),
    FOREIGN KEY (account_id, email_id) REFERENCES emails (account_id, id) ON DELETE CASCADE
);
CREATE INDEX email_message_ids_email ON email_message_ids (account_id, email_id);
