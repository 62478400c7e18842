-- RFC 8621 §2 (checklist MBX-10): isSubscribed is per user. The owner's value stays in
-- mailboxes.is_subscribed; every other user who may read the account has a row here (absent = false).
CREATE TABLE mailbox_subscriptions (
    account_id    TEXT    NOT NULL,
    mailbox_id    TEXT    NOT NULL,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_subscribed BOOLEAN NOT NULL,
    PRIMARY KEY (account_id, user_id, mailbox_id),
    FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id) ON DELETE CASCADE
);
