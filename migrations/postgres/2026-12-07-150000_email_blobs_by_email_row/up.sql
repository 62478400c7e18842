-- An email's message is found through the email row itself, not a `blob_refs` row: blob ids
-- are SHA-256 hashes, so each reference landed on a random page of two indexes (and of the blobs
-- key, for its foreign key); at a million messages that was the costliest insert of an import
-- (22 % of the server's time, 3.5 GB of WAL). One index on the email row serves both questions:
-- is the blob used in this account (visibility) and by anyone (purge). A hash index: its entries
-- are 4-byte hash codes, so it stays a fraction of a B-tree over 65-character ids, small enough
-- to stay in `shared_buffers` while inserts land on random pages of it.
CREATE INDEX emails_blob ON emails USING hash (blob_id);
DELETE FROM blob_refs WHERE owner_type = 'Email';
