DROP TABLE push_creation_windows;
DROP TABLE push_cursors;
DROP TABLE push_deliveries;
DROP TABLE push_subscriptions;
