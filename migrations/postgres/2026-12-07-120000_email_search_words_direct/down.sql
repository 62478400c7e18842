ALTER INDEX email_search_words RESET (fastupdate);
