-- Email/query (RFC 8621 §4.4): the index behind the default sort, and header fields for `header`
-- conditions (see src/store/email_query.rs).

-- receivedAt order with the id tie-break, so `inMailbox` + `receivedAt desc` needs no sort step.
CREATE INDEX emails_received_id ON emails (account_id, received_at, id);

-- One row per header field of an email: lowercase name, value decoded, whitespace-folded and
-- lowercase. Filled when the email is created.
CREATE TABLE email_headers (
    account_id TEXT   NOT NULL,
    email_id   TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    name       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    PRIMARY KEY (account_id, email_id, position),
    FOREIGN KEY (account_id, email_id) REFERENCES emails (account_id, id) ON DELETE CASCADE
);
CREATE INDEX email_headers_name ON email_headers (account_id, name, email_id);
