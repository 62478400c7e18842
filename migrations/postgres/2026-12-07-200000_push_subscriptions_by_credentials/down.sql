DROP INDEX push_subscriptions_token;
ALTER TABLE push_subscriptions DROP COLUMN token_hash;
