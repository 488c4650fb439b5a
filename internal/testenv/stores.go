package testenv

// Five framework session stores, each table created as its project creates
// it on PostgreSQL, and functions that do to the rows what the project's
// code does, returning what a client then presents. Where the DDL says how
// it was checked, "checked" means against a database the project itself set
// up: the catalogs matched line for line (see stores_test.go).

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ---- Better Auth ----

// BetterAuthSchema is Better Auth's "user" and "session" tables as its
// Kysely migrations create them on PostgreSQL with the default options:
// getMigrations in better-auth/better-auth
// packages/better-auth/src/db/get-migration.ts over the fields of
// packages/core/src/db/get-tables.ts, compiled by Kysely. These are the
// statements compileMigrations printed for better-auth 1.7.25 (checked).
// Only the date fields with a default get one; "emailVerified" has none.
const BetterAuthSchema = `
create table "user" ("id" text not null primary key, "name" text not null, "email" text not null unique, "emailVerified" boolean not null, "image" text, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz default CURRENT_TIMESTAMP not null);
create table "session" ("id" text not null primary key, "expiresAt" timestamptz not null, "token" text not null unique, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz not null, "ipAddress" text, "userAgent" text, "userId" text not null references "user" ("id") on delete cascade);
create index "session_userId_idx" on "session" ("userId");
`

// BetterAuthSessionLifetime is session.expiresIn's default (7 days).
const BetterAuthSessionLifetime = 7 * 24 * time.Hour

// BetterAuthCookieName is the session cookie's name without a __Secure-
// prefix (plain-HTTP base URL).
const BetterAuthCookieName = "better-auth.session_token"

// CreateBetterAuthSchema creates BetterAuthSchema in the database of pool.
func CreateBetterAuthSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, BetterAuthSchema); err != nil {
		return fmt.Errorf("create the better auth schema: %w", err)
	}
	return nil
}

// BetterAuthSignIn does what a Better Auth sign-in does to the tables: it
// creates the user when there is none, then inserts a session whose token
// and id are two generateId() strings (32 alphanumerics), expiring after
// BetterAuthSessionLifetime. presented is what the client holds in the
// session cookie (URL-decoded) and the bearer plugin's set-auth-token header.
func BetterAuthSignIn(ctx context.Context, pool *pgxpool.Pool, secret, userID string) (presented, id, token string, err error) {
	now := time.Now().Truncate(time.Millisecond) // a JavaScript Date
	_, err = pool.Exec(ctx, `insert into "user" ("id", "name", "email", "emailVerified", "createdAt", "updatedAt")
		values ($1, $1, $1 || '@example.com', false, $2, $2) on conflict ("id") do nothing`, userID, now)
	if err != nil {
		return "", "", "", fmt.Errorf("insert better auth user: %w", err)
	}
	id, token = betterAuthID(), betterAuthID()
	_, err = pool.Exec(ctx, `insert into "session" ("id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId")
		values ($1, $2, $3, $4, $4, '127.0.0.1', 'curl/8', $5)`, id, now.Add(BetterAuthSessionLifetime), token, now, userID)
	if err != nil {
		return "", "", "", fmt.Errorf("insert better auth session: %w", err)
	}
	return BetterAuthSign(secret, token), id, token, nil
}

// BetterAuthSign is better-call's signCookieValue before its URL encoding:
// the value, ".", and the standard base64 (with padding) of
// HMAC-SHA256(key: the secret's UTF-8, message: the value's UTF-8); see
// Bekacru/better-call src/crypto.ts.
func BetterAuthSign(secret, value string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(value))
	return value + "." + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// BetterAuthCookie is the Cookie header pair a browser sends: the signed
// value URL-encoded (encodeURIComponent) as better-call serializes it.
func BetterAuthCookie(presented string) string {
	return BetterAuthCookieName + "=" + EncodeURIComponent(presented)
}

// BetterAuthSignOut ends a session as sign-out does (deleteSession): a
// DELETE by token, which the WAL shows carrying only the id.
func BetterAuthSignOut(ctx context.Context, pool *pgxpool.Pool, token string) error {
	if _, err := pool.Exec(ctx, `delete from "session" where "token" = $1`, token); err != nil {
		return fmt.Errorf("delete better auth session: %w", err)
	}
	return nil
}

// BetterAuthRevokeAll ends every session of a user as revokeSessions does
// (deleteUserSessions): one DELETE by "userId".
func BetterAuthRevokeAll(ctx context.Context, pool *pgxpool.Pool, userID string) error {
	if _, err := pool.Exec(ctx, `delete from "session" where "userId" = $1`, userID); err != nil {
		return fmt.Errorf("delete better auth sessions of a user: %w", err)
	}
	return nil
}

// betterAuthID is generateId(): 32 characters of a-z, A-Z, 0-9
// (better-auth/better-auth packages/core/src/utils/id.ts).
func betterAuthID() string { return randomString(32, alnum) }

// ---- Ory Kratos ----

// KratosSchema is the networks, identities and sessions tables of Ory Kratos
// as its PostgreSQL migrations leave them: ory/kratos
// persistence/sql/migrations/sql (*.postgres.up.sql where there is one,
// else the dialect-free file, chosen per version as oryx/popx does) and
// oryx/networkx/migrations/sql. It is their end state in one statement per
// table, not the 346 migrations replayed; checked against a database those
// migrations built. Timestamps are without time zone; Kratos writes UTC.
// The other tables (session_devices, credentials, flows, ...) are left out:
// none of them is referenced by these three.
const KratosSchema = `
CREATE TABLE "networks" (
"id" UUID NOT NULL,
PRIMARY KEY("id"),
"created_at" timestamp NOT NULL,
"updated_at" timestamp NOT NULL
);
CREATE TABLE "identities" (
"id" UUID NOT NULL,
PRIMARY KEY("id"),
"schema_id" VARCHAR (2048) NOT NULL,
"traits" jsonb NOT NULL,
"created_at" timestamp NOT NULL,
"updated_at" timestamp NOT NULL,
"nid" UUID,
"state" VARCHAR (255) NOT NULL DEFAULT 'active',
"state_changed_at" timestamp,
"metadata_public" jsonb,
"metadata_admin" jsonb,
"available_aal" VARCHAR (4),
"organization_id" UUID,
"external_id" VARCHAR (64),
CONSTRAINT "identities_nid_fk_idx" FOREIGN KEY ("nid") REFERENCES "networks" ("id") ON UPDATE RESTRICT ON DELETE CASCADE,
CONSTRAINT "identities_external_id_check" CHECK (external_id IS NULL OR external_id <> '')
);
CREATE INDEX identities_nid_id_idx ON identities (nid, id);
CREATE INDEX identities_nid_organization_id_idx ON identities (organization_id);
CREATE UNIQUE INDEX identities_nid_external_id_idx ON identities (nid, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE "sessions" (
"id" UUID NOT NULL,
PRIMARY KEY("id"),
"issued_at" timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
"expires_at" timestamp NOT NULL,
"authenticated_at" timestamp NOT NULL,
"identity_id" UUID NOT NULL,
"created_at" timestamp NOT NULL,
"updated_at" timestamp NOT NULL,
"token" VARCHAR (39),
"active" boolean DEFAULT 'false',
"nid" UUID,
"logout_token" VARCHAR (39),
"aal" VARCHAR (4) NOT NULL DEFAULT 'aal1',
"authentication_methods" jsonb NOT NULL,
FOREIGN KEY ("identity_id") REFERENCES "identities" ("id") ON DELETE cascade,
CONSTRAINT "sessions_nid_fk_idx" FOREIGN KEY ("nid") REFERENCES "networks" ("id") ON UPDATE RESTRICT ON DELETE CASCADE
);
CREATE UNIQUE INDEX "sessions_token_uq_idx" ON "sessions" (token);
CREATE UNIQUE INDEX "sessions_logout_token_uq_idx" ON "sessions" (logout_token);
CREATE INDEX sessions_list_idx ON sessions (nid ASC, created_at DESC, id ASC);
CREATE INDEX sessions_list_active_idx ON sessions (nid ASC, expires_at ASC, active ASC, created_at DESC, id ASC);
CREATE INDEX sessions_list_identity_idx ON sessions (identity_id ASC, nid ASC, created_at DESC);
`

// KratosSessionLifespan is session.lifespan's default (24 hours).
const KratosSessionLifespan = 24 * time.Hour

// KratosDB returns a fresh database of the package's shared server that
// holds KratosSchema and nothing else: Kratos's sessions table has the name
// of sessionguard's own, so the database has none of sessionguard's
// migrations.
func KratosDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := SharedPostgres(t).CreateDatabase(ctx, "kratos_"+strings.ReplaceAll(uuid.NewString(), "-", ""), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateKratosSchema(ctx, Pool(t, url)); err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateKratosSchema creates KratosSchema in the database of pool, which
// must not hold a sessions table already.
func CreateKratosSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, KratosSchema); err != nil {
		return fmt.Errorf("create the kratos schema: %w", err)
	}
	return nil
}

// KratosNetwork returns the network Kratos runs in, creating it as
// networkx.Determine does when there is none (oryx/networkx/manager.go).
func KratosNetwork(ctx context.Context, pool *pgxpool.Pool) (nid string, err error) {
	err = pool.QueryRow(ctx, `WITH new AS (
			INSERT INTO networks (id, created_at, updated_at)
			SELECT gen_random_uuid(), now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
			WHERE NOT EXISTS (SELECT 1 FROM networks) RETURNING id, created_at)
		SELECT id::text FROM (SELECT id, created_at FROM new UNION ALL SELECT id, created_at FROM networks) n
		ORDER BY created_at ASC LIMIT 1`).Scan(&nid)
	if err != nil {
		return "", fmt.Errorf("determine the kratos network: %w", err)
	}
	return nid, nil
}

// KratosSignIn does what a password login does to the tables: it creates
// the identity when there is none, then inserts an active aal1 session
// (session.NewInactiveSession, ManagerHTTP.ActivateSession,
// Persister.UpsertSession) whose token is "ory_st_" and 32 alphanumerics,
// expiring after KratosSessionLifespan. The client presents token
// (X-Session-Token or Authorization: Bearer). The session_devices row
// Kratos also writes is left out with its table.
func KratosSignIn(ctx context.Context, pool *pgxpool.Pool, identityID string) (token, id string, err error) {
	nid, err := KratosNetwork(ctx, pool)
	if err != nil {
		return "", "", err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	_, err = pool.Exec(ctx, `INSERT INTO identities (id, schema_id, traits, created_at, updated_at, nid, state, state_changed_at, available_aal)
		VALUES ($1::uuid, 'default', jsonb_build_object('email', $1::uuid::text || '@example.com'), $2, $2, $3, 'active', $2, 'aal1')
		ON CONFLICT (id) DO NOTHING`, identityID, now, nid)
	if err != nil {
		return "", "", fmt.Errorf("insert kratos identity: %w", err)
	}
	amr, err := json.Marshal([]map[string]any{{"method": "password", "aal": "aal1", "completed_at": now}})
	if err != nil {
		return "", "", fmt.Errorf("encode kratos authentication methods: %w", err)
	}
	id, token = uuid.NewString(), "ory_st_"+randomString(32, alnum)
	_, err = pool.Exec(ctx, `INSERT INTO sessions (aal, active, authenticated_at, authentication_methods, created_at, expires_at, id, identity_id, issued_at, logout_token, nid, token, updated_at)
		VALUES ('aal1', true, $1, $2, $1, $3, $4, $5, $1, $6, $7, $8, $1)`,
		now, string(amr), now.Add(KratosSessionLifespan), id, identityID, "ory_lo_"+randomString(32, alnum), nid, token)
	if err != nil {
		return "", "", fmt.Errorf("insert kratos session: %w", err)
	}
	return token, id, nil
}

// KratosDeactivate revokes a session by id as Persister.RevokeSessionById
// does on PostgreSQL (persistence/sql/persister_session.go,
// revokeMatchingSessions): active goes false, the row stays, and a session
// already inactive is not written again. found is 0 when there is no such
// session in the network.
func KratosDeactivate(ctx context.Context, pool *pgxpool.Pool, id string) (found int, err error) {
	nid, err := KratosNetwork(ctx, pool)
	if err != nil {
		return 0, err
	}
	err = pool.QueryRow(ctx, `WITH found AS (SELECT id FROM sessions WHERE id = $1 AND nid = $2),
     upd AS (UPDATE sessions SET active = false FROM found WHERE sessions.id = found.id AND sessions.active = true RETURNING 1)
SELECT count(*) FROM found`, id, nid).Scan(&found)
	if err != nil {
		return 0, fmt.Errorf("revoke kratos session: %w", err)
	}
	return found, nil
}

// KratosLogout revokes the session of a token as the API logout does
// (Persister.RevokeSessionByToken on PostgreSQL) and returns its id ("" when
// the token names no session).
func KratosLogout(ctx context.Context, pool *pgxpool.Pool, token string) (id string, err error) {
	nid, err := KratosNetwork(ctx, pool)
	if err != nil {
		return "", err
	}
	rows, err := pool.Query(ctx, `WITH found AS (SELECT id, identity_id FROM sessions WHERE token = $1 AND nid = $2),
     upd AS (UPDATE sessions SET active = false FROM found WHERE sessions.id = found.id AND sessions.active = true RETURNING 1)
SELECT id::text FROM found`, token, nid)
	if err != nil {
		return "", fmt.Errorf("log out of kratos session: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return "", fmt.Errorf("read revoked kratos session: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("log out of kratos session: %w", err)
	}
	return id, nil
}

// KratosDelete deletes a session as the admin API's delete does
// (Persister.DeleteSessionsByIDs).
func KratosDelete(ctx context.Context, pool *pgxpool.Pool, id string) error {
	nid, err := KratosNetwork(ctx, pool)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `DELETE FROM sessions WHERE id IN ($1) AND nid = $2`, id, nid); err != nil {
		return fmt.Errorf("delete kratos session: %w", err)
	}
	return nil
}

// ---- connect-pg-simple ----

// ConnectPGSimpleSchema is connect-pg-simple's table.sql verbatim
// (voxpelli/node-connect-pg-simple table.sql, 10.0.0), which
// createTableIfMissing also runs (checked).
const ConnectPGSimpleSchema = `CREATE TABLE "session" (
  "sid" varchar NOT NULL COLLATE "default",
  "sess" json NOT NULL,
  "expire" timestamp(6) NOT NULL
)
WITH (OIDS=FALSE);

ALTER TABLE "session" ADD CONSTRAINT "session_pkey" PRIMARY KEY ("sid") NOT DEFERRABLE INITIALLY IMMEDIATE;

CREATE INDEX "IDX_session_expire" ON "session" ("expire");
`

// ConnectPGSimpleTTL is the store's expiry when the session cookie has no
// expires (ONE_DAY, in index.js).
const ConnectPGSimpleTTL = 24 * time.Hour

// CreateConnectPGSimpleSchema creates ConnectPGSimpleSchema in the database
// of pool.
func CreateConnectPGSimpleSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, ConnectPGSimpleSchema); err != nil {
		return fmt.Errorf("create the connect-pg-simple schema: %w", err)
	}
	return nil
}

// ConnectPGSimpleSID is express-session's generateSessionId, uid-safe(24):
// 24 random bytes in URL-safe base64 without padding (32 characters).
func ConnectPGSimpleSID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ConnectPGSimpleSess is the JSON express-session stores for a session
// whose cookie has express-session's defaults (no maxAge) after passport
// logged user in.
func ConnectPGSimpleSess(user string) []byte {
	var u bytes.Buffer
	enc := json.NewEncoder(&u)
	enc.SetEscapeHTML(false) // as JSON.stringify
	enc.Encode(user)         // a string always encodes
	return []byte(`{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"passport":{"user":` + strings.TrimSuffix(u.String(), "\n") + `}}`)
}

// ConnectPGSimpleSignIn does what a passport login through express-session
// does with this store: a new sid, its session saved with Set to expire
// after ConnectPGSimpleTTL. cookie is the Cookie header pair the browser then
// sends.
func ConnectPGSimpleSignIn(ctx context.Context, pool *pgxpool.Pool, secret, user string) (cookie, sid string, err error) {
	sid = ConnectPGSimpleSID()
	if err := ConnectPGSimpleSet(ctx, pool, sid, ConnectPGSimpleSess(user), time.Now().Add(ConnectPGSimpleTTL)); err != nil {
		return "", "", err
	}
	return ConnectPGSimpleCookie(secret, sid), sid, nil
}

// ConnectPGSimpleSet is the store's set(): an upsert whose expiry is
// to_timestamp of the whole seconds (rounded up) of expire, so the
// timestamp without time zone holds it in the session's time zone.
func ConnectPGSimpleSet(ctx context.Context, pool *pgxpool.Pool, sid string, sess []byte, expire time.Time) error {
	_, err := pool.Exec(ctx, `INSERT INTO "session" (sess, expire, sid) SELECT $1, to_timestamp($2), $3 ON CONFLICT (sid) DO UPDATE SET sess=$1, expire=to_timestamp($2) RETURNING sid`,
		string(sess), ceilUnix(expire), sid)
	if err != nil {
		return fmt.Errorf("set connect-pg-simple session: %w", err)
	}
	return nil
}

// ConnectPGSimpleTouch is the store's touch(), which express-session calls
// on every request: an UPDATE of expire alone.
func ConnectPGSimpleTouch(ctx context.Context, pool *pgxpool.Pool, sid string, expire time.Time) error {
	_, err := pool.Exec(ctx, `UPDATE "session" SET expire = to_timestamp($1) WHERE sid = $2 RETURNING sid`, ceilUnix(expire), sid)
	if err != nil {
		return fmt.Errorf("touch connect-pg-simple session: %w", err)
	}
	return nil
}

// ConnectPGSimpleDestroy is the store's destroy(), run by logout.
func ConnectPGSimpleDestroy(ctx context.Context, pool *pgxpool.Pool, sid string) error {
	if _, err := pool.Exec(ctx, `DELETE FROM "session" WHERE sid = $1`, sid); err != nil {
		return fmt.Errorf("destroy connect-pg-simple session: %w", err)
	}
	return nil
}

// ConnectPGSimpleCookie is the Cookie header pair the browser holds:
// express-session's setcookie, "s:" and cookie-signature's sign(sid,
// secret) (sid, ".", base64 HMAC-SHA256 without trailing '='), encoded by
// the cookie package's default encodeURIComponent (expressjs/session
// index.js, tj/node-cookie-signature index.js).
func ConnectPGSimpleCookie(secret, sid string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(sid))
	sig := strings.TrimRight(base64.StdEncoding.EncodeToString(mac.Sum(nil)), "=")
	return "connect.sid=" + EncodeURIComponent("s:"+sid+"."+sig)
}

// ceilUnix is Math.ceil(date / 1000): whole seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	ms := t.UnixMilli()
	return (ms + 999) / 1000
}

// ---- Django ----

// DjangoSchema is django.contrib.sessions' table as its migration
// (django/django django/contrib/sessions/migrations/0001_initial.py)
// creates it on PostgreSQL: sqlmigrate sessions 0001's output, whose "_like"
// index the PostgreSQL schema editor adds for a varchar primary key (checked
// against Django 3.2's; the index names hash the table and column names, so
// every version since 2.0 prints the same).
const DjangoSchema = `
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" timestamp with time zone NOT NULL);
CREATE INDEX "django_session_session_key_c0390e0f_like" ON "django_session" ("session_key" varchar_pattern_ops);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");
`

// DjangoSessionCookieAge is SESSION_COOKIE_AGE's default (two weeks).
const DjangoSessionCookieAge = 14 * 24 * time.Hour

// CreateDjangoSchema creates DjangoSchema in the database of pool.
func CreateDjangoSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, DjangoSchema); err != nil {
		return fmt.Errorf("create the django schema: %w", err)
	}
	return nil
}

// DjangoNewSessionKey is SessionBase._get_new_session_key's key: 32
// characters of a-z and 0-9.
func DjangoNewSessionKey() string { return randomString(32, "abcdefghijklmnopqrstuvwxyz0123456789") }

// DjangoCreate saves a new session as SessionStore.create does
// (save(must_create=True): a plain INSERT), holding sessionJSON (the session
// dict as Django's JSONSerializer writes it) signed with secretKey, expiring
// after DjangoSessionCookieAge. The sessionid cookie holds sessionKey as is.
func DjangoCreate(ctx context.Context, pool *pgxpool.Pool, secretKey, sessionKey string, sessionJSON []byte) error {
	now := time.Now()
	_, err := pool.Exec(ctx, `INSERT INTO "django_session" ("session_key", "session_data", "expire_date") VALUES ($1, $2, $3)`,
		sessionKey, DjangoSessionData(secretKey, sessionJSON, now), now.Add(DjangoSessionCookieAge))
	if err != nil {
		return fmt.Errorf("insert django session: %w", err)
	}
	return nil
}

// DjangoDelete deletes a session as SessionStore.delete does (logout's
// flush): Django's delete of one row.
func DjangoDelete(ctx context.Context, pool *pgxpool.Pool, sessionKey string) error {
	_, err := pool.Exec(ctx, `DELETE FROM "django_session" WHERE "django_session"."session_key" IN ($1)`, sessionKey)
	if err != nil {
		return fmt.Errorf("delete django session: %w", err)
	}
	return nil
}

// DjangoSessionData is SessionBase.encode: signing.dumps(compress=True)
// with the salt "django.contrib.sessions.SessionStore" at time at. The
// JSON is zlib-compressed (prefix ".") only when that saves more than one
// byte; then ":", the time in base62, ":", and the URL-safe base64 of
// HMAC-SHA256 keyed with SHA-256(salt + "signer" + secretKey)
// (django/core/signing.py, django/utils/crypto.py salted_hmac). Go's zlib
// bytes may differ from Python's; Django reads either.
func DjangoSessionData(secretKey string, sessionJSON []byte, at time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString(sessionJSON)
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(sessionJSON) // a bytes.Buffer does not fail
	w.Close()
	if z.Len() < len(sessionJSON)-1 {
		payload = "." + base64.RawURLEncoding.EncodeToString(z.Bytes())
	}
	value := payload + ":" + base62(at.Unix())
	key := sha256.Sum256([]byte("django.contrib.sessions.SessionStore" + "signer" + secretKey))
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte(value))
	return value + ":" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// base62 is Django's base62 encoding of a non-negative number.
func base62(n int64) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 62 {
		b = append([]byte{digits[n%62]}, b...)
	}
	return string(b)
}

// ---- Lucia ----

// LuciaSchema is the schema of the Lucia guide's "Sessions with
// PostgreSQL" page (lucia-auth/lucia pages/sessions/basic-api/postgresql.md,
// last at commit 591ae81c, 2025-06-07), without the trailing comma after
// expires_at that makes the page's statement a syntax error. The guide
// names the user table app_user to avoid "user".
const LuciaSchema = `
CREATE TABLE app_user (
    id SERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE
);

CREATE TABLE user_session (
    id TEXT NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES app_user(id),
    expires_at TIMESTAMPTZ NOT NULL
);
`

// LuciaSessionLifetime is the guide's session expiration (30 days).
const LuciaSessionLifetime = 30 * 24 * time.Hour

// CreateLuciaSchema creates LuciaSchema in the database of pool.
func CreateLuciaSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, LuciaSchema); err != nil {
		return fmt.Errorf("create the lucia schema: %w", err)
	}
	return nil
}

// LuciaCreateUser inserts a user (the guide leaves sign-up to the app) and
// returns its id.
func LuciaCreateUser(ctx context.Context, pool *pgxpool.Pool, username string) (id int, err error) {
	if err := pool.QueryRow(ctx, `INSERT INTO app_user (username) VALUES ($1) RETURNING id`, username).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert lucia user: %w", err)
	}
	return id, nil
}

// LuciaToken is the guide's generateSessionToken: 20 random bytes in
// lowercase base32 without padding (encodeBase32LowerCaseNoPadding).
func LuciaToken() string {
	b := make([]byte, 20)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// LuciaSessionID is the session id of a token: the lowercase hex SHA-256
// of its UTF-8 (encodeHexLowerCase(sha256(...))).
func LuciaSessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// LuciaCreateSession is the guide's createSession: the row of the token's
// session, expiring after LuciaSessionLifetime. The client holds token.
func LuciaCreateSession(ctx context.Context, pool *pgxpool.Pool, token string, userID int) (id string, err error) {
	id = LuciaSessionID(token)
	expires := time.Now().Add(LuciaSessionLifetime).Truncate(time.Millisecond) // a JavaScript Date
	if _, err := pool.Exec(ctx, `INSERT INTO user_session (id, user_id, expires_at) VALUES ($1, $2, $3)`, id, userID, expires); err != nil {
		return "", fmt.Errorf("insert lucia session: %w", err)
	}
	return id, nil
}

// LuciaInvalidate is the guide's invalidateSession.
func LuciaInvalidate(ctx context.Context, pool *pgxpool.Pool, id string) error {
	if _, err := pool.Exec(ctx, `DELETE FROM user_session WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete lucia session: %w", err)
	}
	return nil
}

// LuciaInvalidateAll is the guide's invalidateAllSessions.
func LuciaInvalidateAll(ctx context.Context, pool *pgxpool.Pool, userID int) error {
	if _, err := pool.Exec(ctx, `DELETE FROM user_session WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete lucia sessions of a user: %w", err)
	}
	return nil
}

// ---- shared ----

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomString draws n characters of alphabet uniformly from crypto/rand.
func randomString(n int, alphabet string) string {
	limit := 256 - 256%len(alphabet) // reject the bytes that would skew
	out := make([]byte, 0, n)
	b := make([]byte, 1)
	for len(out) < n {
		rand.Read(b)
		if int(b[0]) < limit {
			out = append(out, alphabet[int(b[0])%len(alphabet)])
		}
	}
	return string(out)
}

// EncodeURIComponent is JavaScript's encodeURIComponent: every UTF-8 byte
// but A-Z a-z 0-9 - _ . ! ~ * ' ( ) percent-encoded in uppercase hex.
func EncodeURIComponent(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
