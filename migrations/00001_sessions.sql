-- +goose Up
-- The sessions table: the source of truth. A session is valid if and only if
-- its row exists, revoked_at is null and expires_at > now().
CREATE TABLE sessions (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL,
    -- SHA-256 of the token's bytes; the token itself is never stored.
    token_hash  bytea       NOT NULL CONSTRAINT sessions_token_hash_len CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz NULL,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Logical replication names the cache entry by token hash: with the unique
-- token_hash index as replica identity, a DELETE carries the old token_hash,
-- and an UPDATE that changes token_hash carries the old one too. Cheaper in
-- WAL than REPLICA IDENTITY FULL, which would log every old column.
ALTER TABLE sessions REPLICA IDENTITY USING INDEX sessions_token_hash_key;

-- +goose StatementBegin
CREATE FUNCTION sessions_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER sessions_touch_updated_at
    BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_touch_updated_at();

-- +goose Down
DROP TABLE sessions;
DROP FUNCTION sessions_touch_updated_at();
