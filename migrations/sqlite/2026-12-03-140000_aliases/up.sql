-- Extra addresses that deliver to a user (`herald alias`), stored lowercased. An address of the
-- form "@domain" catches every otherwise unknown address of that domain.
CREATE TABLE aliases (
    address    TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX aliases_user ON aliases (user_id);
