DROP TABLE email_keywords;
DROP TABLE email_mailboxes;
DROP TABLE emails;
DROP TABLE mailboxes;
