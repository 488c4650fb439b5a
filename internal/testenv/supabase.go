package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
// the template carries), its time zone far from UTC.
func SupabaseDB(t testing.TB) string {
	t.Helper()
	url := DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := Pool(t, url)
	if err := CreateSupabaseAuth(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// Sessions of other databases read as UTC: a timestamp without time
	// zone (refreshed_at) read as local time would then be hours off.
	if _, err := pool.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'America/Los_Angeles'); END $$`); err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateSupabaseAuth creates the auth server's role (once per cluster) and
// its auth schema in the database of pool, which needs a superuser.
func CreateSupabaseAuth(ctx context.Context, pool *pgxpool.Pool) error {
	for _, sql := range []string{supabaseRoles, supabaseAuthSchema} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create the supabase auth schema: %w", err)
		}
	}
	return nil
}

// SupabaseSignIn does to auth.users and auth.sessions what the auth server
// does when a user signs in with a password: it creates the user when there
// is none, inserts a session row (aal1, no not_after, never refreshed) and
// returns its id.
func SupabaseSignIn(ctx context.Context, pool *pgxpool.Pool, userID string) (sessionID string, err error) {
	_, err = pool.Exec(ctx, `INSERT INTO auth.users (id, aud, role, email, created_at, updated_at)
		VALUES ($1::uuid, 'authenticated', 'authenticated', $1::text || '@example.com', now(), now()) ON CONFLICT (id) DO NOTHING`, userID)
	if err != nil {
		return "", fmt.Errorf("insert auth.users row: %w", err)
	}
	err = pool.QueryRow(ctx, `INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip, refresh_token_counter)
		VALUES (gen_random_uuid(), $1, now(), now(), 'aal1', 'curl/8', '127.0.0.1', 0) RETURNING id::text`, userID).Scan(&sessionID)
	if err != nil {
		return "", fmt.Errorf("insert auth.sessions row: %w", err)
	}
	return sessionID, nil
}

// SupabaseAccessToken signs an access token as the auth server does with
// an HS256 JWT secret: its claims (no iss, nbf or jti), valid for ttl.
// extra claims are added, or replace the defaults (nil deletes one).
func SupabaseAccessToken(secret []byte, userID, sessionID string, ttl time.Duration, extra map[string]any) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"aud": "authenticated", "exp": now.Add(ttl).Unix(), "iat": now.Unix(), "sub": userID,
		"email": userID + "@example.com", "phone": "", "app_metadata": map[string]any{"provider": "email", "providers": []string{"email"}},
		"user_metadata": map[string]any{}, "role": "authenticated", "aal": "aal1",
		"amr": []map[string]any{{"method": "password", "timestamp": now.Unix()}}, "session_id": sessionID, "is_anonymous": false,
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
