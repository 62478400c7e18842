DROP TABLE mailbox_subscriptions;
