ALTER INDEX email_search_words SET (fastupdate = off);
ALTER INDEX email_search_words RESET (gin_pending_list_limit);
SELECT gin_clean_pending_list('email_search_words'::regclass);
