package pg_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// The template database already has session_invalidation on our own
// sessions table: tests that need no publication yet use this one.
const supabasePub = "supabase_sessions"

const publishAll = "insert, update, delete, truncate"

func supabaseTable(t *testing.T) source.Table {
	t.Helper()
	table, err := source.TableOf(source.Supabase)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

var roleSeq atomic.Int64

// newRole creates a login role with attrs (e.g. "REPLICATION BYPASSRLS"),
// unique per run since roles are cluster-wide, runs grants (with %s for
// the role) as admin, and drops it and its grants when the test ends.
func newRole(t *testing.T, admin *pgxpool.Pool, attrs string, grants ...string) string {
	t.Helper()
	role := fmt.Sprintf("migrator_%d_%d", time.Now().UnixNano()%1e9, roleSeq.Add(1))
	exec(t, admin, `CREATE ROLE `+role+` LOGIN `+attrs)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = admin.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
	})
	for _, g := range grants {
		exec(t, admin, fmt.Sprintf(g, role))
	}
	return role
}

// The grants a role needs to pass every check but ownership.
var (
	grantUsage  = `GRANT USAGE ON SCHEMA auth TO %s`
	grantSelect = `GRANT SELECT ON auth.sessions TO %s`
	grantDelete = `GRANT DELETE ON auth.sessions TO %s`
)

// catalogState is what migrate must never change: the relations of the
// database and the definition of auth.sessions (its pg_class row's xmin
// moves with any ALTER TABLE).
func catalogState(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(context.Background(), `
		SELECT (SELECT string_agg(oid::regclass::text, ',' ORDER BY oid) FROM pg_class
		         WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)) ||
		       ' | ' || (SELECT concat_ws(',', xmin, relreplident, relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner))
		                   FROM pg_class WHERE oid = 'auth.sessions'::regclass)`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func publishesSupabase(t *testing.T, pool *pgxpool.Pool, pub string) bool {
	t.Helper()
	var ok bool
	err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = 'auth' AND tablename = 'sessions')`, pub).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestMigrateForeignCreatesOnlyThePublication: as a superuser, migrate
// creates the publication on auth.sessions with all four operations and
// nothing else (no table, no goose run, auth.sessions untouched); a second
// run changes nothing and reports the publication present.
func TestMigrateForeignCreatesOnlyThePublication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.SupabaseDB(t)
	admin := testenv.Pool(t, url)
	exec(t, admin, `DROP PUBLICATION session_invalidation`)
	// Goose would recreate what this drops; migrate must not.
	exec(t, admin, `DROP TABLE goose_db_version`)
	before := catalogState(t, admin)

	res, err := pg.MigrateForeign(ctx, admin, testenv.DefaultPublication, supabaseTable(t))
	if err != nil || !res.PublicationCreated || len(res.Warnings) != 0 || len(res.Applied) != 0 {
		t.Fatalf("migrate: %+v %v, want the publication created and no warning", res, err)
	}
	if after := catalogState(t, admin); after != before {
		t.Fatalf("migrate changed tables:\nbefore %s\nafter  %s", before, after)
	}
	ops, xmin := pubState(t, admin, testenv.DefaultPublication)
	if ops != "insert,update,delete,truncate" || !publishesSupabase(t, admin, testenv.DefaultPublication) {
		t.Fatalf("publication publishes %q, auth.sessions in it: %v", ops, publishesSupabase(t, admin, testenv.DefaultPublication))
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_publication_tables WHERE pubname = $1`, testenv.DefaultPublication).Scan(&n); err != nil || n != 1 {
		t.Fatalf("publication has %d tables (%v), want auth.sessions only", n, err)
	}

	res, err = pg.MigrateForeign(ctx, admin, testenv.DefaultPublication, supabaseTable(t))
	if err != nil || res.PublicationCreated {
		t.Fatalf("second run: %+v %v, want the publication present", res, err)
	}
	if _, xmin2 := pubState(t, admin, testenv.DefaultPublication); xmin2 != xmin {
		t.Fatalf("second run rewrote the publication (xmin %d -> %d)", xmin, xmin2)
	}
	if after := catalogState(t, admin); after != before {
		t.Fatalf("second run changed tables:\nbefore %s\nafter  %s", before, after)
	}
}

// TestMigrateForeignFixesAnExistingPublication: a publication of another
// table, publishing inserts only, gets auth.sessions added and all four
// operations, keeping its other table.
func TestMigrateForeignFixesAnExistingPublication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := testenv.Pool(t, testenv.SupabaseDB(t))
	exec(t, admin, `CREATE PUBLICATION `+supabasePub+` FOR TABLE auth.users WITH (publish = 'insert')`)
	res, err := pg.MigrateForeign(ctx, admin, supabasePub, supabaseTable(t))
	if err != nil || res.PublicationCreated {
		t.Fatalf("migrate: %+v %v", res, err)
	}
	if ops, _ := pubState(t, admin, supabasePub); ops != "insert,update,delete,truncate" || !publishesSupabase(t, admin, supabasePub) {
		t.Fatalf("publish %q, auth.sessions in it: %v", ops, publishesSupabase(t, admin, supabasePub))
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_publication_tables WHERE pubname = $1`, supabasePub).Scan(&n); err != nil || n != 2 {
		t.Fatalf("publication has %d tables (%v), want auth.users and auth.sessions", n, err)
	}
}

// TestMigrateForeignNamesWhatIsMissing: each missing privilege or property
// fails migrate with one line naming it and the SQL that fixes it, creates
// no publication and leaves the table as it was; running that SQL makes the
// next migrate pass.
func TestMigrateForeignNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		attrs  string   // of the migrating role; "" migrates as the superuser
		grants []string // %s is the role
		setup  string   // run as the superuser first
		// pubFirst: the superuser creates the publication first, so the
		// role, once fixed, only checks.
		pubFirst bool
		want     []string // %s is the quoted role
		fix      string   // SQL (%s: role) after which migrate passes
	}{
		{
			name: "no usage on schema auth", attrs: "REPLICATION BYPASSRLS", grants: []string{grantSelect, grantDelete}, pubFirst: true,
			want: []string{`may not use schema auth`, `GRANT USAGE ON SCHEMA auth TO %s`},
			fix:  grantUsage,
		},
		{
			name: "no replication", attrs: "BYPASSRLS", grants: []string{grantUsage, grantSelect, grantDelete}, pubFirst: true,
			want: []string{`neither REPLICATION nor SUPERUSER`, `ALTER ROLE %s REPLICATION`, `if the invalidator connects as another role`},
			fix:  `ALTER ROLE %s REPLICATION`,
		},
		{
			name: "no select", attrs: "REPLICATION BYPASSRLS", grants: []string{grantUsage, grantDelete}, pubFirst: true,
			want: []string{`may not read auth.sessions`, `GRANT SELECT ON auth.sessions TO %s`, `(supabase_auth_admin)`},
			fix:  grantSelect,
		},
		{
			name: "row security, not owner, no bypassrls", attrs: "REPLICATION", grants: []string{grantUsage, grantSelect, grantDelete}, pubFirst: true,
			want: []string{`reads no rows of auth.sessions`, `BYPASSRLS`, `ALTER ROLE %s BYPASSRLS`, `every session would look signed out`},
			fix:  `ALTER ROLE %s BYPASSRLS`,
		},
		{
			name: "row security forced on the owner", attrs: "REPLICATION",
			grants: []string{`GRANT supabase_auth_admin TO %s`},
			setup:  `ALTER TABLE auth.sessions FORCE ROW LEVEL SECURITY`, pubFirst: true,
			want: []string{`forced on it (FORCE ROW LEVEL SECURITY)`, `ALTER ROLE %s BYPASSRLS`},
			fix:  `ALTER ROLE %s BYPASSRLS`,
		},
		{
			name:  "replica identity nothing",
			setup: `ALTER TABLE auth.sessions REPLICA IDENTITY NOTHING`,
			want:  []string{`replica identity of auth.sessions (NOTHING)`, `ALTER TABLE auth.sessions REPLICA IDENTITY DEFAULT`, `migrate never alters this table`},
			fix:   `ALTER TABLE auth.sessions REPLICA IDENTITY DEFAULT`,
		},
		{
			name:  "replica identity of an index without id",
			setup: `CREATE UNIQUE INDEX sessions_user_created ON auth.sessions (user_id) INCLUDE (id); ALTER TABLE auth.sessions REPLICA IDENTITY USING INDEX sessions_user_created`,
			want:  []string{`replica identity of auth.sessions (USING INDEX, an index without id)`, `ALTER TABLE auth.sessions REPLICA IDENTITY DEFAULT`},
			fix:   `ALTER TABLE auth.sessions REPLICA IDENTITY DEFAULT`,
		},
		{
			name: "may read, does not own, no publication", attrs: "REPLICATION BYPASSRLS", grants: []string{grantUsage, grantSelect, grantDelete},
			want: []string{`there is no publication "` + supabasePub + `"`, `the table's owner supabase_auth_admin`,
				`CREATE PUBLICATION "` + supabasePub + `" FOR TABLE auth.sessions WITH (publish = '` + publishAll + `')`, `then migrate again, which then only checks`},
			fix: `CREATE PUBLICATION "` + supabasePub + `" FOR TABLE auth.sessions WITH (publish = '` + publishAll + `')`,
		},
		{
			name: "owner without create on the database", attrs: "REPLICATION", grants: []string{`GRANT supabase_auth_admin TO %s`},
			want: []string{`there is no publication`, `with CREATE on database`, `CREATE PUBLICATION "` + supabasePub + `" FOR TABLE auth.sessions`},
			fix:  `GRANT CREATE ON DATABASE "%s" TO %s`,
		},
		{
			name: "publication of another table, not its owner", attrs: "REPLICATION BYPASSRLS", grants: []string{grantUsage, grantSelect, grantDelete},
			setup: `CREATE PUBLICATION ` + supabasePub + ` FOR TABLE auth.users WITH (publish = '` + publishAll + `')`,
			want:  []string{`does not publish auth.sessions`, `ALTER PUBLICATION "` + supabasePub + `" ADD TABLE auth.sessions`},
			fix:   `ALTER PUBLICATION ` + supabasePub + ` ADD TABLE auth.sessions`,
		},
		{
			name: "publication without truncate, not its owner", attrs: "REPLICATION BYPASSRLS", grants: []string{grantUsage, grantSelect, grantDelete},
			setup: `CREATE PUBLICATION ` + supabasePub + ` FOR TABLE auth.sessions WITH (publish = 'insert, update, delete')`,
			want:  []string{`does not publish all four of insert, update, delete and truncate`, `ALTER PUBLICATION "` + supabasePub + `" SET (publish = '` + publishAll + `')`},
			fix:   `ALTER PUBLICATION ` + supabasePub + ` SET (publish = '` + publishAll + `')`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := testenv.SupabaseDB(t)
			admin := testenv.Pool(t, url)
			if c.setup != "" {
				exec(t, admin, c.setup)
			}
			if c.pubFirst {
				exec(t, admin, `CREATE PUBLICATION `+supabasePub+` FOR TABLE auth.sessions WITH (publish = '`+publishAll+`')`)
			}
			published := publishesSupabase(t, admin, supabasePub)
			pool, role, quoted := admin, "postgres", `"postgres"`
			if c.attrs != "" {
				role = newRole(t, admin, c.attrs, c.grants...)
				quoted = `"` + role + `"`
				pool = asRole(t, url, role)
			}
			before := catalogState(t, admin)
			_, err := pg.MigrateForeign(ctx, pool, supabasePub, supabaseTable(t))
			if err == nil {
				t.Fatal("migrate passed")
			}
			msg := err.Error()
			for _, w := range c.want {
				if w = strings.ReplaceAll(w, "%s", quoted); !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if after := catalogState(t, admin); after != before {
				t.Errorf("a refused migrate changed tables:\nbefore %s\nafter  %s", before, after)
			}
			if !published && publishesSupabase(t, admin, supabasePub) {
				t.Error("a refused migrate published auth.sessions")
			}

			fix := strings.ReplaceAll(c.fix, "%s", role)
			if strings.Contains(c.fix, "ON DATABASE") {
				var db string
				if err := admin.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
					t.Fatal(err)
				}
				fix = fmt.Sprintf(c.fix, db, role)
			}
			exec(t, admin, fix)
			res, err := pg.MigrateForeign(ctx, pool, supabasePub, supabaseTable(t))
			if err != nil {
				t.Fatalf("migrate after %s: %v", fix, err)
			}
			if !publishesSupabase(t, admin, supabasePub) {
				t.Fatalf("migrate after %s passed and auth.sessions is not published: %+v", fix, res)
			}
		})
	}
}

// TestMigrateForeignWarnsWithoutDelete: DELETE is needed by the admin API's
// revoke endpoints only; its absence is a warning naming the GRANT. A role
// that may read but not own the table passes once the owner made the
// publication, and changes nothing.
func TestMigrateForeignWarnsWithoutDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.SupabaseDB(t)
	admin := testenv.Pool(t, url)
	exec(t, admin, `CREATE PUBLICATION `+supabasePub+` FOR TABLE auth.sessions WITH (publish = '`+publishAll+`')`)
	_, xmin := pubState(t, admin, supabasePub)
	role := newRole(t, admin, "REPLICATION BYPASSRLS", grantUsage, grantSelect)
	res, err := pg.MigrateForeign(ctx, asRole(t, url, role), supabasePub, supabaseTable(t))
	if err != nil || res.PublicationCreated {
		t.Fatalf("migrate: %+v %v, want success with the publication present", res, err)
	}
	if len(res.Warnings) != 1 {
		t.Fatalf("warnings %v, want the missing DELETE", res.Warnings)
	}
	w := res.Warnings[0]
	if w.Role != role || w.SQL != `GRANT DELETE ON auth.sessions TO "`+role+`"` || !strings.Contains(w.Message, "revoke endpoints") {
		t.Fatalf("warning %+v", w)
	}
	if _, xmin2 := pubState(t, admin, supabasePub); xmin2 != xmin {
		t.Fatal("a role that may only check rewrote the publication")
	}
	exec(t, admin, fmt.Sprintf(grantDelete, role))
	if res, err := pg.MigrateForeign(ctx, asRole(t, url, role), supabasePub, supabaseTable(t)); err != nil || len(res.Warnings) != 0 {
		t.Fatalf("with DELETE: %+v %v, want no warning", res, err)
	}
}

// TestMigrateForeignWarnsOfPolicies: row security policies might let the
// role read every row, or not; migrate cannot tell, so it warns.
func TestMigrateForeignWarnsOfPolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.SupabaseDB(t)
	admin := testenv.Pool(t, url)
	exec(t, admin, `CREATE PUBLICATION `+supabasePub+` FOR TABLE auth.sessions WITH (publish = '`+publishAll+`')`)
	role := newRole(t, admin, "REPLICATION", grantUsage, grantSelect, grantDelete)
	exec(t, admin, `CREATE POLICY sessionguard_reads ON auth.sessions FOR SELECT TO `+role+` USING (true)`)
	res, err := pg.MigrateForeign(ctx, asRole(t, url, role), supabasePub, supabaseTable(t))
	if err != nil || len(res.Warnings) != 1 || res.Warnings[0].SQL != `ALTER ROLE "`+role+`" BYPASSRLS` {
		t.Fatalf("migrate: %+v %v, want one warning naming BYPASSRLS", res, err)
	}
}

// TestMigrateForeignNoAuthSchema: a database that is not a Supabase
// project's gets the message that says so.
func TestMigrateForeignNoAuthSchema(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	_, err := pg.MigrateForeign(context.Background(), pool, supabasePub, supabaseTable(t))
	want := "no table auth.sessions: is DATABASE_URL the database the Supabase auth server writes to (it creates the table)?"
	if err == nil || err.Error() != want {
		t.Fatalf("err %v, want %q", err, want)
	}
}
