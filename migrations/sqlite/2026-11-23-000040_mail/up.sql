-- Mailboxes, and the email tables that mailbox counts, threads and queries stand on (RFC 8621).
CREATE TABLE mailboxes (
    account_id    TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    parent_id     TEXT,
    role          TEXT,
    sort_order    BIGINT  NOT NULL DEFAULT 0,
    is_subscribed BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX mailboxes_parent ON mailboxes (account_id, parent_id);
-- RFC 8621 §2: a role is unique within an account
CREATE UNIQUE INDEX mailboxes_role ON mailboxes (account_id, role) WHERE role IS NOT NULL;

CREATE TABLE emails (
    account_id  TEXT   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id          TEXT   NOT NULL,
    blob_id     TEXT   NOT NULL,
    thread_id   TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX emails_thread ON emails (account_id, thread_id);
CREATE INDEX emails_received ON emails (account_id, received_at);

CREATE TABLE email_mailboxes (
    account_id TEXT NOT NULL,
    email_id   TEXT NOT NULL,
    mailbox_id TEXT NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, email_id),
    FOREIGN KEY (account_id, email_id) REFERENCES emails (account_id, id) ON DELETE CASCADE
);
CREATE INDEX email_mailboxes_email ON email_mailboxes (account_id, email_id);

-- keywords are stored lowercase (RFC 8621 §4.1.1)
CREATE TABLE email_keywords (
    account_id TEXT NOT NULL,
    email_id   TEXT NOT NULL,
    keyword    TEXT NOT NULL,
    PRIMARY KEY (account_id, email_id, keyword),
    FOREIGN KEY (account_id, email_id) REFERENCES emails (account_id, id) ON DELETE CASCADE
);
CREATE INDEX email_keywords_keyword ON email_keywords (account_id, keyword, email_id);
