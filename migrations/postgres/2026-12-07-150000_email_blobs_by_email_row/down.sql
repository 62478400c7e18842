INSERT INTO blob_refs (account_id, blob_id, owner_type, owner_id)
SELECT account_id, blob_id, 'Email', id FROM emails;
DROP INDEX emails_blob;
