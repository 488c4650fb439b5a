package pg_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testenv.Pool(t, testenv.DB(t))
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

const userID = "3b241101-e2bb-4255-8caf-4136c566a962"

func insert(t *testing.T, pool *pgxpool.Pool, token, expiresIn string, revoked bool) {
	t.Helper()
	exec(t, pool, `INSERT INTO sessions (user_id, token_hash, expires_at, revoked_at)
	               VALUES ($1, sha256(convert_to($2, 'UTF8')), now() + $3::interval, CASE WHEN $4 THEN now() END)`,
		userID, token, expiresIn, revoked)
}

// TestRevokeByUserOnlyLiveSessions: an expired, never revoked session is
// neither revoked nor counted; an earlier revoked, unexpired one is not
// counted but its hash is returned (a retry drops its cache entry).
func TestRevokeByUserOnlyLiveSessions(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	store := pg.NewStore(pool, testenv.OwnTable())
	insert(t, pool, "live", "1 hour", false)
	insert(t, pool, "expired", "-1 minute", false)
	insert(t, pool, "revoked-before", "1 hour", true)
	insert(t, pool, "revoked-expired", "-1 minute", true)

	n, hashes, err := store.RevokeByUser(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("revoked %d, want 1 (only the live session)", n)
	}
	got := map[session.Hash]bool{}
	for _, h := range hashes {
		got[h] = true
	}
	if len(hashes) != 2 || !got[session.HashToken("live")] || !got[session.HashToken("revoked-before")] {
		t.Fatalf("hashes %x, want those of the live and the earlier revoked session", hashes)
	}
	var expiredRevoked bool
	err = pool.QueryRow(context.Background(),
		`SELECT revoked_at IS NOT NULL FROM sessions WHERE token_hash = sha256(convert_to('expired', 'UTF8'))`).Scan(&expiredRevoked)
	if err != nil || expiredRevoked {
		t.Fatalf("expired session revoked: %v %v", expiredRevoked, err)
	}
	if n, _, err := store.RevokeByUser(context.Background(), userID); err != nil || n != 0 {
		t.Fatalf("again: %d %v, want 0", n, err)
	}
}

func pubState(t *testing.T, pool *pgxpool.Pool, name string) (ops string, xmin uint32) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `
		SELECT concat_ws(',', CASE WHEN pubinsert THEN 'insert' END, CASE WHEN pubupdate THEN 'update' END,
		                      CASE WHEN pubdelete THEN 'delete' END, CASE WHEN pubtruncate THEN 'truncate' END),
		       xmin::text::bigint
		  FROM pg_publication WHERE pubname = $1`, name).Scan(&ops, &xmin)
	if err != nil {
		t.Fatal(err)
	}
	return ops, xmin
}

// TestMigrateFixesPublishOptionsOnlyWhenNeeded: a publication created
// without truncate is fixed; a right one is left untouched (no ALTER, which
// would need ownership of the publication on every deploy).
func TestMigrateFixesPublishOptionsOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	exec(t, pool, `CREATE PUBLICATION no_truncate FOR TABLE sessions WITH (publish = 'insert, update, delete')`)
	if _, err := pg.Migrate(ctx, pool, "no_truncate"); err != nil {
		t.Fatal(err)
	}
	ops, xmin := pubState(t, pool, "no_truncate")
	if ops != "insert,update,delete,truncate" {
		t.Fatalf("publish %q after migrate, want all four", ops)
	}
	res, err := pg.Migrate(ctx, pool, "no_truncate")
	if err != nil || res.PublicationCreated {
		t.Fatalf("migrate again: %+v %v", res, err)
	}
	if _, xmin2 := pubState(t, pool, "no_truncate"); xmin2 != xmin {
		t.Fatalf("migrate rewrote a publication that needed nothing (xmin %d -> %d)", xmin, xmin2)
	}

	// A publication of other tables gets sessions added, with all four.
	exec(t, pool, `CREATE TABLE other (id int PRIMARY KEY)`)
	exec(t, pool, `CREATE PUBLICATION others FOR TABLE other WITH (publish = 'insert')`)
	if _, err := pg.Migrate(ctx, pool, "others"); err != nil {
		t.Fatal(err)
	}
	if ops, _ := pubState(t, pool, "others"); ops != "insert,update,delete,truncate" {
		t.Fatalf("publish %q, want all four", ops)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'others'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("others publishes %d tables (%v), want 2", n, err)
	}
}

// TestMigrateRefusesRowFilterAndColumnList: a publication that would drop
// session events fails the migration with a message saying what to do, and
// doing it makes the migration pass.
func TestMigrateRefusesRowFilterAndColumnList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	var version int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 150000 {
		t.Skip("row filters and column lists need PostgreSQL 15")
	}
	exec(t, pool, `CREATE PUBLICATION filtered FOR TABLE sessions WHERE (revoked_at IS NULL)`)
	exec(t, pool, `CREATE PUBLICATION columns FOR TABLE sessions (id, token_hash)`)
	for pub, want := range map[string]string{"filtered": "row filter", "columns": "column list"} {
		_, err := pg.Migrate(ctx, pool, pub)
		if err == nil {
			t.Fatalf("%s: migrate accepted a publication with a %s", pub, want)
		}
		msg := err.Error()
		if !strings.Contains(msg, want) || !strings.Contains(msg, `ALTER PUBLICATION "`+pub+`" DROP TABLE sessions`) {
			t.Fatalf("%s: error %q should name the %s and the fix", pub, msg, want)
		}
		// The advice works.
		exec(t, pool, `ALTER PUBLICATION `+pub+` DROP TABLE sessions`)
		if _, err := pg.Migrate(ctx, pool, pub); err != nil {
			t.Fatalf("%s: migrate after the fix: %v", pub, err)
		}
		var filtered bool
		err = pool.QueryRow(ctx, `
			SELECT r.prqual IS NOT NULL OR r.prattrs IS NOT NULL
			  FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
			 WHERE p.pubname = $1 AND r.prrelid = 'sessions'::regclass`, pub).Scan(&filtered)
		if err != nil || filtered {
			t.Fatalf("%s: after the fix, filtered=%v err=%v", pub, filtered, err)
		}
	}
}

// asRole connects to the database of pool's URL as role (trust auth).
func asRole(t *testing.T, url, role string) *pgxpool.Pool {
	t.Helper()
	return testenv.Pool(t, strings.Replace(url, "postgres@", role+"@", 1))
}

func emitMessage(pool *pgxpool.Pool) error {
	_, err := pool.Exec(context.Background(), `SELECT pg_logical_emit_message(true, 'sessionguard.heartbeat', '99999999999999')`)
	return err
}

func isPermissionDenied(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// TestRevokePublicEmitMessage: before, a role with no grants can write a
// forged heartbeat into the WAL; after, it gets permission denied, the
// migrating role keeps EXECUTE, and a second run changes nothing.
func TestRevokePublicEmitMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.DB(t)
	pool := testenv.Pool(t, url)
	// Roles are cluster-wide: unique per run (-count=2 reuses the cluster).
	stranger := fmt.Sprintf("stranger_%s_%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_")), time.Now().UnixNano()%1e9)
	exec(t, pool, `CREATE ROLE `+stranger+` LOGIN`)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP ROLE IF EXISTS `+stranger) })
	strangerPool := asRole(t, url, stranger)
	if err := emitMessage(strangerPool); err != nil {
		t.Fatalf("before: a role with no grants cannot emit (%v); the test proves nothing", err)
	}

	res, err := pg.RevokePublicEmitMessage(ctx, pool)
	if err != nil || !res.Changed || res.Role != "postgres" || len(res.Signatures) < 2 {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	if err := emitMessage(strangerPool); !isPermissionDenied(err) {
		t.Fatalf("after: err %v, want permission denied", err)
	}
	if err := emitMessage(pool); err != nil {
		t.Fatalf("the migrating role lost EXECUTE: %v", err)
	}
	if res, err := pg.RevokePublicEmitMessage(ctx, pool); err != nil || res.Changed {
		t.Fatalf("second run: %+v %v, want no change", res, err)
	}
	// A granted role (the invalidator's) may rerun it without superuser.
	exec(t, pool, `GRANT EXECUTE ON FUNCTION `+strings.Join(res.Signatures, ", ")+` TO `+stranger)
	if res, err := pg.RevokePublicEmitMessage(ctx, strangerPool); err != nil || res.Changed {
		t.Fatalf("rerun by a granted non-superuser: %+v %v, want no change", res, err)
	}
	if err := emitMessage(strangerPool); err != nil {
		t.Fatalf("granted role cannot emit: %v", err)
	}
}

// TestRevokePublicEmitMessageNeedsSuperuser: a non-superuser gets one line
// naming the missing privilege and the SQL to run, and nothing changes.
func TestRevokePublicEmitMessageNeedsSuperuser(t *testing.T) {
	t.Parallel()
	url := testenv.DB(t)
	pool := testenv.Pool(t, url)
	role := "migrator_" + strings.ToLower(t.Name())
	exec(t, pool, `CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP ROLE IF EXISTS `+role) })
	_, err := pg.RevokePublicEmitMessage(context.Background(), asRole(t, url, role))
	if err == nil {
		t.Fatal("a non-superuser revoked")
	}
	msg := err.Error()
	for _, want := range []string{"needs a superuser", "REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean,text,text)", "FROM PUBLIC", "GRANT EXECUTE", `TO "` + role + `"`} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("error spans lines: %q", msg)
	}
	if err := emitMessage(asRole(t, url, role)); err != nil {
		t.Fatalf("PUBLIC lost EXECUTE after a refused run: %v", err)
	}
}

// TestIdentity: the identity names cluster, database and table; another
// database differs, a re-created table differs, a missing table is an error.
func TestIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := newPool(t), newPool(t)
	idA, err := pg.Identity(ctx, a, "sessions", "")
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(idA, "/"); len(parts) != 3 {
		t.Fatalf("identity %q, want system/db/table", idA)
	}
	if again, err := pg.NewStore(a, testenv.OwnTable()).Identity(ctx); err != nil || again != idA {
		t.Fatalf("again: %q %v, want %q", again, err, idA)
	}
	idB, err := pg.Identity(ctx, b, "sessions", "")
	if err != nil || idB == idA || strings.Split(idB, "/")[0] != strings.Split(idA, "/")[0] {
		t.Fatalf("other database: %q %v (a: %q): want the same system, another database", idB, err, idA)
	}
	exec(t, a, `ALTER TABLE sessions RENAME TO sessions_old`)
	if _, err := pg.Identity(ctx, a, "sessions", ""); !errors.Is(err, pg.ErrNoSessionsTable) {
		t.Fatalf("no table: err %v, want ErrNoSessionsTable", err)
	}
	exec(t, a, `CREATE TABLE sessions (LIKE sessions_old INCLUDING ALL)`)
	if id, err := pg.Identity(ctx, a, "sessions", ""); err != nil || id == idA {
		t.Fatalf("re-created table: %q %v, want an identity other than %q", id, err, idA)
	}
	// Usable inside any SELECT, as the invalidator uses it.
	var n int
	var id string
	if err := a.QueryRow(ctx, `SELECT count(*), `+pg.IdentitySQL("sessions", "")+` FROM sessions`).Scan(&n, &id); err != nil || id == "" {
		t.Fatalf("inside a SELECT: %q %v", id, err)
	}
}
