-- New words wait in the GIN index's pending list again, now at most 256 kB of them, and a write
-- of many emails merges the list at its end (gin_clean_pending_list, store::email_search).
--
-- Inserted one by one into the index (fastupdate = off), the words of an import took 38 % of
-- the server's time; merged in bulk, a third of that (BENCHMARKS.md, "PostgreSQL import").
-- A search scans what is pending: the default limit (4 MB) made a rare word take 135 ms right
-- after an import; 256 kB bounds that scan for the small writes (deliveries) that are not
-- merged at once, and the backend whose insert crosses the limit merges the list.
ALTER INDEX email_search_words SET (fastupdate = on, gin_pending_list_limit = 256);
