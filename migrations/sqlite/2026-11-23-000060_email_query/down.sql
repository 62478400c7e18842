DROP TABLE email_headers;
DROP INDEX emails_received_id;
