-- emails_received_id (account_id, received_at, id) serves every query emails_received
-- (account_id, received_at) did, and in order of id as well: one index less to write per email.
DROP INDEX emails_received;
