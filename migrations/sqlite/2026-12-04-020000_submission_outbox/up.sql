-- The submission outbox (issue 11): one row per recipient of an EmailSubmission that is not yet
-- delivered, refused or given up. EmailSubmission/set create inserts the rows in the same write as
-- the EmailSubmission; the SubmissionSender claims due rows (with a lease, so a node that dies
-- mid-send only delays a row), sends them and settles each one. The message is a blob referenced
-- by ('SubmissionOutbox', submission id) until the last row of the submission is settled, so it
-- survives the Email being destroyed.
CREATE TABLE submission_outbox (
    account_id       TEXT    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    submission_id    TEXT    NOT NULL,
    recipient        TEXT    NOT NULL,
    -- the local account that receives it; NULL: through the relay
    local_account_id TEXT,
    mail_from        TEXT    NOT NULL,
    blob_id          TEXT    NOT NULL,
    -- milliseconds since the epoch
    queued_at        BIGINT  NOT NULL,
    next_attempt_at  BIGINT  NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_reply       TEXT    NOT NULL DEFAULT '',
    claimed_by       TEXT,
    claimed_until    BIGINT,
    PRIMARY KEY (account_id, submission_id, recipient)
);
CREATE INDEX submission_outbox_due ON submission_outbox (next_attempt_at);
