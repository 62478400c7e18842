-- Stream tickets (POST /jmap/ticket) in the store, so a ticket issued by one node opens a stream
-- on any node, once. Only a SHA-256 of the ticket is kept. token_hash is the bearer token the
-- ticket was issued to (NULL for a password): revoking that token voids its unused tickets too.
CREATE TABLE stream_tickets (
    hash       TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX stream_tickets_user ON stream_tickets (user_id, expires_at);
CREATE INDEX stream_tickets_expiry ON stream_tickets (expires_at);
