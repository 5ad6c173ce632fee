-- The trust boundary (SECURITY.md).
--
-- People: which key created the person (an enroll key may only add faces to, or delete faces
-- of, the people it created) and the sha256 of the person's withdrawal token (returned once at
-- creation: with it the data subject withdraws consent, and so erases the record, without an
-- operator or an admin key).
ALTER TABLE people ADD COLUMN created_by_key uuid;
ALTER TABLE people ADD COLUMN withdrawal_token_sha256 text
    CHECK (withdrawal_token_sha256 IS NULL OR withdrawal_token_sha256 ~ '^[0-9a-f]{64}$');

-- Keys: an optional expiry, and when each key was last used (listing keys shows stale ones).
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
-- A rotated key points at the key that replaced it.
ALTER TABLE api_keys ADD COLUMN replaced_by uuid REFERENCES api_keys (id);
