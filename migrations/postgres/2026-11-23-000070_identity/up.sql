-- Identities (RFC 8621 §6) and the VacationResponse singleton (RFC 8621 §8).
CREATE TABLE identities (
    account_id     TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id             TEXT    NOT NULL,
    name           TEXT    NOT NULL DEFAULT '',
    email          TEXT    NOT NULL,
    -- EmailAddress[] as JSON text, NULL for null
    reply_to       TEXT,
    bcc            TEXT,
    text_signature TEXT    NOT NULL DEFAULT '',
    html_signature TEXT    NOT NULL DEFAULT '',
    may_delete     BOOLEAN NOT NULL,
    PRIMARY KEY (account_id, id)
);

-- one row per account once set; no row = the default (disabled, everything else null)
CREATE TABLE vacation_responses (
    account_id TEXT    PRIMARY KEY NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    is_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    -- UTCDate strings (RFC 8620 §1.4)
    from_date  TEXT,
    to_date    TEXT,
    subject    TEXT,
    text_body  TEXT,
    html_body  TEXT
);

-- EmailSubmission (RFC 8621 §7): sent at once, so undo_status is always 'final'.
CREATE TABLE email_submissions (
    account_id      TEXT   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id              TEXT   NOT NULL,
    identity_id     TEXT   NOT NULL,
    email_id        TEXT   NOT NULL,
    thread_id       TEXT   NOT NULL,
    -- Envelope and String[DeliveryStatus] as JSON text
    envelope        TEXT   NOT NULL,
    send_at         BIGINT NOT NULL,
    undo_status     TEXT   NOT NULL,
    delivery_status TEXT   NOT NULL,
    PRIMARY KEY (account_id, id)
);
