DROP TABLE blob_refs;
DROP TABLE blob_uploads;
DROP TABLE blobs;
