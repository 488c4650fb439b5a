package testenv

import (
	"context"
	"testing"
	"time"
)

// supabaseAuthSchema is the part of the Supabase auth server's schema that
// its sessions live in, shaped as the server's current migrations leave it
// (observed: ../shared/SUPABASE.md): auth.sessions with its 15 columns and
// default replica identity, row security on and no policy, owned by
// supabase_auth_admin, deleted with its user (and deleting its refresh
// tokens and MFA claims) by cascade. Only the columns of auth.users that a
// test needs are here.
const supabaseAuthSchema = `
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
SET ROLE supabase_auth_admin;
CREATE TYPE auth.aal_level AS ENUM ('aal1', 'aal2', 'aal3');
CREATE TABLE auth.users (
    instance_id  uuid,
    id           uuid NOT NULL PRIMARY KEY,
    aud          varchar(255),
    role         varchar(255),
    email        varchar(255),
    created_at   timestamptz,
    updated_at   timestamptz,
    is_anonymous boolean NOT NULL DEFAULT false,
    deleted_at   timestamptz
);
CREATE TABLE auth.oauth_clients (id uuid NOT NULL PRIMARY KEY);
CREATE TABLE auth.sessions (
    id                     uuid NOT NULL,
    user_id                uuid NOT NULL,
    created_at             timestamptz,
    updated_at             timestamptz,
    factor_id              uuid,
    aal                    auth.aal_level,
    not_after              timestamptz,
    refreshed_at           timestamp without time zone,
    user_agent             text,
    ip                     inet,
    tag                    text,
    oauth_client_id        uuid,
    refresh_token_hmac_key text,
    refresh_token_counter  bigint,
    scopes                 text,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT sessions_oauth_client_id_fkey FOREIGN KEY (oauth_client_id) REFERENCES auth.oauth_clients (id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_id_idx ON auth.sessions (user_id);
CREATE INDEX sessions_not_after_idx ON auth.sessions (not_after DESC);
CREATE TABLE auth.refresh_tokens (
    instance_id uuid,
    id          bigserial PRIMARY KEY,
    token       varchar(255) UNIQUE,
    user_id     varchar(255),
    revoked     boolean,
    created_at  timestamptz,
    updated_at  timestamptz,
    parent      varchar(255),
    session_id  uuid REFERENCES auth.sessions (id) ON DELETE CASCADE
);
CREATE TABLE auth.mfa_amr_claims (
    id                    uuid NOT NULL PRIMARY KEY,
    session_id            uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    authentication_method text NOT NULL
);
ALTER TABLE auth.sessions ENABLE ROW LEVEL SECURITY;
RESET ROLE;
`

// supabaseRoles creates the auth server's owner role once per cluster (roles
// are cluster-wide; tests run in parallel).
const supabaseRoles = `
DO $$ BEGIN
  CREATE ROLE supabase_auth_admin NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
`

// SupabaseDB returns a fresh database of the package's shared server that
// holds the Supabase auth schema (and sessionguard's own migrations, which
// the template carries).
func SupabaseDB(t testing.TB) string {
	t.Helper()
	url := DB(t)
	pool := Pool(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, sql := range []string{supabaseRoles, supabaseAuthSchema} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("create the supabase auth schema: %v", err)
		}
	}
	return url
}
