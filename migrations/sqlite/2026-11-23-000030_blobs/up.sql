-- Blobs (RFC 8620 §6): immutable bytes addressed by SHA-256, shared by every account that uses
-- them. Visibility is per account: a blob is in an account when an object of the account
-- references it (blob_refs) or a user uploaded it there (blob_uploads, visible to that user only).
CREATE TABLE blobs (
    -- 'b' + lowercase hex SHA-256 of data: a valid JMAP Id
    id         TEXT   PRIMARY KEY NOT NULL,
    data       BLOB   NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Unreferenced uploads, per account and uploading user (BIN-07, BIN-08); uploaded_at restarts on a
-- re-upload.
CREATE TABLE blob_uploads (
    account_id  TEXT   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blob_id     TEXT   NOT NULL REFERENCES blobs (id),
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, user_id, blob_id)
);
CREATE INDEX blob_uploads_blob ON blob_uploads (blob_id);
CREATE INDEX blob_uploads_time ON blob_uploads (uploaded_at);

-- Objects that use a blob: e.g. ('Email', emailId) for a message's raw bytes. Any user who may read
-- the account may read a referenced blob.
CREATE TABLE blob_refs (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    blob_id    TEXT NOT NULL REFERENCES blobs (id),
    owner_type TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    PRIMARY KEY (account_id, blob_id, owner_type, owner_id)
);
CREATE INDEX blob_refs_blob ON blob_refs (blob_id);
CREATE INDEX blob_refs_owner ON blob_refs (account_id, owner_type, owner_id);
