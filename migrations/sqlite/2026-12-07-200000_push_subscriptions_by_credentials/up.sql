-- A PushSubscription belongs to the credentials that created it (RFC 8620 §7.2, PSUB-03): the
-- SHA-256 of the bearer token, or NULL for a password login. Only the same credentials see it,
-- and revoking them destroys it.
ALTER TABLE push_subscriptions ADD COLUMN token_hash TEXT;
CREATE INDEX push_subscriptions_token ON push_subscriptions (token_hash);
