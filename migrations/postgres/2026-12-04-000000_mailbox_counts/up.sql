-- Mailbox counts (RFC 8621 §2) maintained in the transaction of every change that moves them, so
-- that Mailbox/get costs the same at a million messages as at a thousand (store/mailbox_counts.rs).
-- `mailbox_threads`: per mailbox and thread, how many of the thread's emails are in the mailbox and
-- how many of those are unread; a row exists while `emails` > 0. `mailbox_counts` sums it up.
CREATE TABLE mailbox_threads (
    account_id TEXT   NOT NULL,
    mailbox_id TEXT   NOT NULL,
    thread_id  TEXT   NOT NULL,
    emails     BIGINT NOT NULL,
    unread     BIGINT NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, thread_id),
    FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id) ON DELETE CASCADE
);
CREATE TABLE mailbox_counts (
    account_id     TEXT   NOT NULL,
    mailbox_id     TEXT   NOT NULL,
    total_emails   BIGINT NOT NULL,
    unread_emails  BIGINT NOT NULL,
    total_threads  BIGINT NOT NULL,
    unread_threads BIGINT NOT NULL,
    PRIMARY KEY (account_id, mailbox_id),
    FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id) ON DELETE CASCADE
);
-- Existing stores: count once, here (unread = neither $seen nor $draft, MBX-06).
INSERT INTO mailbox_threads (account_id, mailbox_id, thread_id, emails, unread)
SELECT em.account_id, em.mailbox_id, e.thread_id,
       CAST(COUNT(*) AS BIGINT),
       CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM email_keywords k
                                  WHERE k.account_id = em.account_id AND k.email_id = em.email_id
                                    AND k.keyword IN ('$seen', '$draft'))
                     THEN 0 ELSE 1 END) AS BIGINT)
FROM email_mailboxes em
JOIN emails e ON e.account_id = em.account_id AND e.id = em.email_id
GROUP BY em.account_id, em.mailbox_id, e.thread_id;
INSERT INTO mailbox_counts (account_id, mailbox_id, total_emails, unread_emails, total_threads, unread_threads)
SELECT account_id, mailbox_id, CAST(SUM(emails) AS BIGINT), CAST(SUM(unread) AS BIGINT),
       CAST(COUNT(*) AS BIGINT), CAST(SUM(CASE WHEN unread > 0 THEN 1 ELSE 0 END) AS BIGINT)
FROM mailbox_threads
GROUP BY account_id, mailbox_id;
