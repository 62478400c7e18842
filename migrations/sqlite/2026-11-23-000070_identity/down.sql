DROP TABLE email_submissions;
DROP TABLE vacation_responses;
DROP TABLE identities;
