DROP TABLE vacation_responses;
DROP TABLE identities;
