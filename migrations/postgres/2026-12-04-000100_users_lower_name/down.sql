DROP INDEX users_lower_name;
