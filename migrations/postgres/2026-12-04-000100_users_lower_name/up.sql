-- LMTP resolves every RCPT TO by the user name, case-insensitively (store/addresses.rs): an index,
-- so that a lookup does not read every user.
CREATE INDEX users_lower_name ON users (lower(name));
