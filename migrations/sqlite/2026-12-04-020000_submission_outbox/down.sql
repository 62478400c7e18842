DROP TABLE submission_outbox;
