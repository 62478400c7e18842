DROP TABLE mailbox_counts;
DROP TABLE mailbox_threads;
