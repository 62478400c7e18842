-- RFC 8620 §7.2 PushSubscription, and the webhook outbox (see docs/webhooks.md).
CREATE TABLE push_subscriptions (
    id                TEXT    PRIMARY KEY NOT NULL,
    -- bound to the user whose credentials created it: removing the user removes it (PSUB-03)
    user_id           TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_client_id  TEXT    NOT NULL,
    url               TEXT    NOT NULL,
    -- RFC 8291 keys, raw octets; both NULL when the client sent no keys
    p256dh            BYTEA,
    auth              BYTEA,
    -- the code sent in the PushVerification; verified once the client echoed it
    verification_code TEXT    NOT NULL,
    verified          BOOLEAN NOT NULL,
    -- unix seconds
    expires           BIGINT  NOT NULL,
    -- JSON array of type names; NULL = all types
    types             TEXT,
    created_at        BIGINT  NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- At most one pending delivery per subscription: newer states are merged into `changed`.
CREATE TABLE push_deliveries (
    subscription_id  TEXT    PRIMARY KEY NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    -- 1 PushVerification, 2 StateChange
    kind             INTEGER NOT NULL,
    -- StateChange: JSON {"accountId": {"Type": seq}}
    changed          TEXT    NOT NULL,
    -- bumped on every merge, so a delivery that raced a merge keeps what it did not send
    revision         BIGINT  NOT NULL,
    attempts         INTEGER NOT NULL,
    -- unix milliseconds
    first_pending_at BIGINT  NOT NULL,
    next_attempt_at  BIGINT  NOT NULL,
    -- a node holding the row for a POST in flight; a lease, so a dead node's claim runs out
    claimed_by       TEXT,
    claimed_until    BIGINT,
    last_error       TEXT
);
CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt_at);

-- How far each verified subscription has been brought up to date with each account it may read:
-- every change with seq <= this is in the outbox (or delivered). After a crash or a lost
-- notification, the sender replays the change log from here, so no change is missed.
CREATE TABLE push_cursors (
    subscription_id TEXT   NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    account_id      TEXT   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, account_id)
);

-- PushSubscription creations per user in the current window (PSUB-11: limit the creation rate,
-- which destroying and recreating must not reset).
CREATE TABLE push_creation_windows (
    user_id      TEXT    PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    window_start BIGINT  NOT NULL,
    created      INTEGER NOT NULL
);
