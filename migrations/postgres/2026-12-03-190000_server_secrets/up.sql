-- Server-wide secrets shared by every node of a cluster, by name. `vapid` is the P-256 private key
-- that signs Web Push requests (RFC 8292), as 32 octets in base64url; RFC 9749 advertises its
-- public half in the session.
CREATE TABLE server_secrets (
    name       TEXT   NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
