-- One counter, bumped in the transaction of every change that withdraws access (`herald account
-- unshare`, `herald user remove`), so that every server process notices it at once: SQLite
-- servers read it when the database changed, PostgreSQL ones also hear NOTIFY herald_access.
CREATE TABLE access_epoch (
    id    INTEGER NOT NULL PRIMARY KEY,
    epoch BIGINT  NOT NULL
);
INSERT INTO access_epoch (id, epoch) VALUES (1, 0);
