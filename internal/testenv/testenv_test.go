package testenv_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestPostgresIsLogicalAndMigrated(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, testenv.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var wal string
	if err := c.QueryRow(ctx, "SHOW wal_level").Scan(&wal); err != nil {
		t.Fatal(err)
	}
	if wal != "logical" {
		t.Fatalf("wal_level = %q, want logical", wal)
	}
	var pub int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = 'sessions'", testenv.DefaultPublication).Scan(&pub); err != nil {
		t.Fatal(err)
	}
	if pub != 1 {
		t.Fatalf("publication does not publish sessions")
	}
}

func TestRedisRestartLosesData(t *testing.T) {
	ctx := context.Background()
	r := testenv.NewRedis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded after stop")
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart exists=%d err=%v, want 0, nil", n, err)
	}
}

// TestSupabaseAuthSchema: the fixture behaves as the auth server's schema
// does where sessionguard relies on it.
func TestSupabaseAuthSchema(t *testing.T) {
	t.Parallel()
	url := testenv.SupabaseDB(t)
	pool := testenv.Pool(t, url)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	user := "5f6c1f3e-0000-4000-8000-000000000001"
	exec(`INSERT INTO auth.users (id, aud, role, email, created_at) VALUES ($1, 'authenticated', 'authenticated', 'a@example.com', now())`, user)
	for i := 0; i < 2; i++ {
		exec(`WITH s AS (INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal)
		       VALUES (gen_random_uuid(), $1, now(), now(), 'aal1') RETURNING id)
		      INSERT INTO auth.refresh_tokens (token, user_id, revoked, created_at, session_id)
		      SELECT md5(random()::text), $1::text, false, now(), id FROM s`, user)
	}
	var cols int
	var ident, owner string
	var rls bool
	if err := pool.QueryRow(ctx, `SELECT relnatts, relreplident::text, pg_get_userbyid(relowner), relrowsecurity
		FROM pg_class WHERE oid = 'auth.sessions'::regclass`).Scan(&cols, &ident, &owner, &rls); err != nil {
		t.Fatal(err)
	}
	if cols != 15 || ident != "d" || owner != "supabase_auth_admin" || !rls {
		t.Fatalf("auth.sessions: %d columns, replica identity %s, owner %s, row security %v", cols, ident, owner, rls)
	}
	// Deleting the user deletes its sessions and their refresh tokens.
	exec(`DELETE FROM auth.users WHERE id = $1`, user)
	var left int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM auth.sessions) + (SELECT count(*) FROM auth.refresh_tokens)`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows left after the user was deleted (%v)", left, err)
	}
}
