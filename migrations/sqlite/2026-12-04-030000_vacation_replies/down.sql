DROP TABLE vacation_replies;
