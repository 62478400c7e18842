-- Whom a vacation reply went to, and when (RFC 5230 :days, RFC 3834 §2): at most one reply per
-- sender per `[submission] vacation_reply_interval_secs`. Emptied for an account whenever its
-- VacationResponse changes, so a new absence answers everyone again.
CREATE TABLE vacation_replies (
    account_id TEXT   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- the envelope sender answered, lowercase
    sender     TEXT   NOT NULL,
    replied_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, sender)
);
