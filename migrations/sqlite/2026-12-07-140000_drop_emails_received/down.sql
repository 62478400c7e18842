CREATE INDEX emails_received ON emails (account_id, received_at);
