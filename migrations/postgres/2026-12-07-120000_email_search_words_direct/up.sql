-- New words go straight into the GIN index instead of its pending list. With the pending list
-- (the default), every search also scanned the up to 4 MB of entries not yet merged: a rare word
-- took 135 ms right after an import of 100,000 messages instead of 1.8 ms. Inserting directly
-- costs an import ~13 % (743 → 649 messages/s at 100,000; BENCHMARKS.md).
ALTER INDEX email_search_words SET (fastupdate = off);
-- Merge what is pending now.
SELECT gin_clean_pending_list('email_search_words'::regclass);
