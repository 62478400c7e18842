-- Users, accounts, access, bearer tokens and the per-account change log (see ../shared/DESIGN.md).
-- Ids are TEXT (JMAP Ids are strings); counters and times are BIGINT (unix seconds).
CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE accounts (
    id         TEXT    PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL,
    owner_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- newest committed write: one increment per write transaction
    seq        BIGINT  NOT NULL DEFAULT 0,
    -- change-log rows with seq <= log_floor were trimmed: /changes from there is impossible
    log_floor  BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL
);
CREATE INDEX accounts_owner ON accounts (owner_id);

CREATE TABLE account_access (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    is_owner   BOOLEAN NOT NULL,
    may_write  BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, account_id)
);
CREATE INDEX account_access_account ON account_access (account_id);

CREATE TABLE tokens (
    id          TEXT   PRIMARY KEY NOT NULL,
    user_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE change_log (
    account_id TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    data_type  TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    object_id  TEXT    NOT NULL,
    -- 1 created, 2 updated, 3 destroyed
    op         INTEGER NOT NULL,
    PRIMARY KEY (account_id, data_type, seq, object_id)
);
CREATE INDEX change_log_seq ON change_log (account_id, seq);
