DROP TABLE change_log;
DROP TABLE tokens;
DROP TABLE account_access;
DROP TABLE accounts;
DROP TABLE users;
