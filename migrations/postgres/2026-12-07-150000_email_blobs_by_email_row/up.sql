-- An email's message is found through the email row itself, not a `blob_refs` row: blob ids
-- are SHA-256 hashes, so each reference landed on a random page of two indexes (and of the blobs
-- key, for its foreign key); at a million messages on PostgreSQL that was the costliest insert of
-- an import (22 % of the server's time, 3.5 GB of WAL). One index on the email row serves both
-- questions: is the blob used in this account (visibility) and by anyone (purge).
CREATE INDEX emails_blob ON emails (blob_id, account_id);
DELETE FROM blob_refs WHERE owner_type = 'Email';
