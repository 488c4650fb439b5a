package pg_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// A table described by settings is completed from the catalog, and a bad
// description is refused with one line naming the setting.
func TestResolveTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Both stores name their table "session": one database each.
	pool, cpsPool := testenv.Pool(t, testenv.DB(t)), testenv.Pool(t, testenv.DB(t))
	if err := testenv.CreateBetterAuthSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := testenv.CreateConnectPGSimpleSchema(ctx, cpsPool); err != nil {
		t.Fatal(err)
	}
	exec(t, pool, `CREATE TABLE "Mixed" ("Token" bytea PRIMARY KEY, "Revoked" boolean, "At" timestamp)`)
	resolveOn := func(q pg.RowQuerier, m source.Mapping) (source.Table, error) {
		if m.Format == "" {
			m.Format = source.FormatRaw
		}
		tb, err := source.FromMapping(m)
		if err != nil {
			return tb, err
		}
		return pg.ResolveTable(ctx, q, tb)
	}
	resolve := func(m source.Mapping) (source.Table, error) { return resolveOn(pool, m) }

	// Better Auth's table: the token is not in the replica identity.
	ba, err := resolve(source.Mapping{Table: "session", Key: "token", User: "userId", Expires: "expiresAt"})
	if err != nil || ba.ID.Name != "id" || !ba.ByID || ba.SecretID || ba.KeyIsHash || ba.ExpiresAt.Type != "timestamp with time zone" {
		t.Fatalf("better auth's table: %+v %v", ba, err)
	}
	// connect-pg-simple's: the sid is the key, the primary key and a secret.
	cps, err := resolveOn(cpsPool, source.Mapping{Table: "public.session", Key: "sid", Format: source.FormatSigned, Expires: "expire"})
	if err != nil || cps.ByID || !cps.SecretID || cps.ExpiresAt.Type != "timestamp without time zone" {
		t.Fatalf("connect-pg-simple's table: %+v %v", cps, err)
	}
	// Mixed case, a hash key, a boolean revocation flag.
	mixed, err := resolve(source.Mapping{Table: `"Mixed"`, Key: "Token", Format: source.FormatSHA256, Revoked: "Revoked", LastActive: "At"})
	if err != nil || !mixed.KeyIsHash || mixed.RevokedAt.Type != "boolean" || mixed.SecretID {
		t.Fatalf("mixed-case table: %+v %v", mixed, err)
	}

	for _, tc := range []struct {
		m    source.Mapping
		want string
	}{
		{source.Mapping{Table: "nosuch", Key: "k"}, "SESSION_TABLE: no table nosuch"},
		{source.Mapping{Table: "session", Key: "tokn"}, `SESSION_TABLE_KEY: table session has no column "tokn"`},
		{source.Mapping{Table: "session", Key: "token", Expires: "expiresat"}, `SESSION_TABLE_EXPIRES: table session has no column "expiresat"`},
		{source.Mapping{Table: "session", Key: "token", Expires: "userId"}, `SESSION_TABLE_EXPIRES: column "userId" of session is text; it must be a timestamp`},
		{source.Mapping{Table: "session", Key: "createdAt"}, `SESSION_TABLE_KEY: column "createdAt" of session is timestamp with time zone`},
		{source.Mapping{Table: "session", Key: "token", Active: "token"}, `SESSION_TABLE_ACTIVE: column "token" of session is text; it must be a boolean`},
		{source.Mapping{Table: "Session", Key: "token"}, `is not a lower-case identifier (quote it`},
	} {
		_, err := resolve(tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line with %q", tc.m, err, tc.want)
		}
	}
	// Every process hashes keys with the catalog's spelling of the name.
	if again, err := resolve(source.Mapping{Table: "public.session", Key: "token"}); err != nil || again.Name != ba.Name || ba.Name != `"public"."session"` {
		t.Fatalf("names: %q and %q (%v), want one spelling", ba.Name, again.Name, err)
	}
	exec(t, pool, `CREATE TABLE two_key (a text, b text, token text UNIQUE, flag boolean, PRIMARY KEY (a, b))`)
	for _, tc := range []struct {
		m    source.Mapping
		want string
	}{
		{source.Mapping{Table: "two_key", Key: "token", ID: "a"}, `SESSION_TABLE_ID: "a" must be the primary key of two_key on its own`},
		{source.Mapping{Table: "two_key", Key: "token", ID: "flag"}, `SESSION_TABLE_ID: column "flag" of two_key is boolean`},
		{source.Mapping{Table: "two_key", Key: "token"}, `no single-column primary key`},
	} {
		if _, err := resolve(tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.m, err, tc.want)
		}
	}
	exec(t, pool, `ALTER TABLE "session" REPLICA IDENTITY NOTHING`)
	if _, err := resolve(source.Mapping{Table: "session", Key: "token"}); err == nil || !strings.Contains(err.Error(), "replica identity") {
		t.Fatalf("replica identity nothing: %v", err)
	}
}

// A user's revocation judges a timestamp without time zone in the zone it
// was written in, as the lookup does, whatever the connection's zone: a
// session two hours from its end, written in UTC, is live even to a
// connection in Asia/Tokyo (nine hours ahead).
func TestRevokeByUserReadsExpiryInItsZone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.DB(t)
	admin := testenv.Pool(t, url)
	exec(t, admin, `CREATE TABLE app_sess (id text PRIMARY KEY, token text NOT NULL UNIQUE, user_id text NOT NULL, expires_at timestamp NOT NULL, revoked_at timestamptz)`)
	exec(t, admin, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Tokyo'); END $$`)
	pool := testenv.Pool(t, url) // new connections: in Tokyo
	exec(t, pool, `INSERT INTO app_sess VALUES ('s1', 'tok1', 'u1', (now() AT TIME ZONE 'UTC') + interval '2 hours', NULL)`)
	tb, err := source.FromMapping(source.Mapping{Table: "app_sess", Key: "token", Format: source.FormatRaw, User: "user_id", Expires: "expires_at", Revoked: "revoked_at"})
	if err != nil {
		t.Fatal(err)
	}
	if tb, err = pg.ResolveTable(ctx, pool, tb); err != nil {
		t.Fatal(err)
	}
	store := pg.NewStore(pool, tb)
	f, err := store.Lookup(ctx, tb.KeyOf("tok1"))
	if err != nil || f.Session == nil || !f.Session.ValidAt(f.Now) {
		t.Fatalf("lookup: %+v %v, want the session valid", f, err)
	}
	n, hashes, err := store.RevokeByUser(ctx, "u1")
	if err != nil || n != 1 || len(hashes) != 1 || hashes[0] != tb.KeyOf("tok1").Hash {
		t.Fatalf("revoke by user: %d %v %v, want the live session revoked", n, hashes, err)
	}
}
