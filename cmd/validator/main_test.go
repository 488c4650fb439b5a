package main_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// binary builds cmd/validator into the test's temporary directory (a
// cached link after the first build).
func binary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "validator")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	}
	if out, err := exec.Command(goBin, "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}

// command prepares the validator with exactly env as its environment.
func command(bin string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, &stdout, &stderr
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

func TestBadConfiguration(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	db := "DATABASE_URL=postgres://u@127.0.0.1:1/app"
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no DATABASE_URL", nil, nil, "DATABASE_URL is required"},
		{"not a postgres URL", []string{"DATABASE_URL=mysql://x"}, nil, "DATABASE_URL must be"},
		{"bad LOG_LEVEL", []string{db, "LOG_LEVEL=loud"}, nil, "LOG_LEVEL"},
		{"bad duration", []string{db, "SESSION_CACHE_TTL=5 minutes"}, nil, "SESSION_CACHE_TTL"},
		{"short ADMIN_TOKEN", []string{db, "ADMIN_TOKEN=short"}, nil, "ADMIN_TOKEN"},
		{"unknown flag", []string{db}, []string{"-nope"}, "nope"},
		{"unknown command", []string{db}, []string{"launch"}, "unknown command"},
		{"bad flag for migrate", nil, []string{"migrate", "-database-url", "x"}, "DATABASE_URL must be"},
		{"DATABASE_URL pgx refuses", []string{"DATABASE_URL=postgres://u:s3cret@h/app?sslmode=sometimes"}, nil, "DATABASE_URL is not a valid"},
		{"REDIS_URL go-redis refuses", []string{db, "REDIS_URL=redis://:s3cret@h:6379/zero"}, nil, "REDIS_URL is not a valid"},
		{"LISTEN_ADDR without port", []string{db, "LISTEN_ADDR=localhost"}, nil, "LISTEN_ADDR"},
		{"ADMIN_TOKEN with trailing newline", []string{db, "ADMIN_TOKEN=0123456789abcdef0123\n"}, nil, "ADMIN_TOKEN has leading or trailing whitespace"},
		{"DB_TIMEOUT of 0", []string{db, "DB_TIMEOUT=0"}, nil, "DB_TIMEOUT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd, stdout, stderr := command(bin, c.env, c.args...)
			if code := exitCode(t, cmd.Run()); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || !strings.HasPrefix(line, "validator: ") {
				t.Fatalf("stderr %q, want one line starting with \"validator: \"", line)
			}
			if strings.Contains(line, "s3cret") {
				t.Fatalf("stderr %q carries a password", line)
			}
			if !strings.Contains(line, c.want) || stdout.Len() != 0 {
				t.Fatalf("stderr %q lacks %q (stdout %q)", line, c.want, stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	for _, args := range [][]string{{"-h"}, {"migrate", "-h"}, {"help"}} {
		cmd, stdout, stderr := command(bin, nil, args...)
		if code := exitCode(t, cmd.Run()); code != 0 {
			t.Fatalf("%v: exit %d; %s", args, code, stderr)
		}
		if !strings.Contains(stdout.String(), "migrate") {
			t.Fatalf("%v: usage %q lacks the commands", args, stdout)
		}
		if args[0] != "help" && !strings.Contains(stdout.String(), "DATABASE_URL") {
			t.Fatalf("%v: usage %q lacks the settings", args, stdout)
		}
	}
}

// `validator migrate` on a database without the schema, twice: both runs
// succeed, the first applies and creates, the second finds all in place.
func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	ctx := context.Background()
	url, err := testenv.SharedPostgres(t).CreateDatabase(ctx, fmt.Sprintf("migrate_twice_%d", time.Now().UnixNano()%1e9), "")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + url, "PUBLICATION=my_pub"}
	for i, want := range []string{`"migrations applied"`, `"schema is up to date"`} {
		cmd, _, stderr := command(bin, env, "migrate")
		if code := exitCode(t, cmd.Run()); code != 0 {
			t.Fatalf("run %d: exit %d; %s", i+1, code, stderr)
		}
		if !strings.Contains(stderr.String(), want) {
			t.Fatalf("run %d: log %s lacks %s", i+1, stderr, want)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'my_pub' AND tablename = 'sessions'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("publication: %d tables, %v", n, err)
	}
}

func TestMigrateWithPostgresDown(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	port, _ := testenv.FreePort()
	cmd, _, stderr := command(bin, []string{fmt.Sprintf("DATABASE_URL=postgres://u@127.0.0.1:%d/app?connect_timeout=2", port)}, "migrate")
	if code := exitCode(t, cmd.Run()); code != 1 {
		t.Fatalf("exit %d, want 1; %s", code, stderr)
	}
	if !strings.Contains(stderr.String(), `"level":"error"`) {
		t.Fatalf("no error logged: %s", stderr)
	}
}

// serve answers on LISTEN_ADDR and exits 0 on SIGTERM.
func TestServeAndSIGTERM(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	port, _ := testenv.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	env := []string{"DATABASE_URL=" + testenv.DB(t), "REDIS_URL=" + testenv.NewRedis(t).URL(),
		"LISTEN_ADDR=" + addr, "ADMIN_TOKEN=0123456789abcdef0123", "LOG_LEVEL=debug", "MAX_STALENESS=0"}
	cmd, _, stderr := command(bin, env) // no command: serve
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	waitStatus(t, "http://"+addr+"/readyz", 200)
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/sessions",
		strings.NewReader(`{"user_id":"7d444840-9dc0-11d1-b245-5ffdce74fad2","ttl":"1m"}`))
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create through the binary: %v %v", resp, err)
	}
	resp.Body.Close()
	waitStatus(t, "http://"+addr+"/metrics", 200)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit %d after SIGTERM; %s", code, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20s after SIGTERM; %s", stderr)
	}
	log := stderr.String()
	for _, want := range []string{`"validator listening"`, `"shutting down`, `"level":"debug"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("log line is not JSON: %s", line)
		}
	}
}

// Starting with Postgres down does not crash: the process serves, /livez
// is 200 and /readyz 503.
func TestServeWithPostgresDown(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	port, _ := testenv.FreePort()
	dead, _ := testenv.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	env := []string{fmt.Sprintf("DATABASE_URL=postgres://u@127.0.0.1:%d/app?connect_timeout=1", dead), "LISTEN_ADDR=" + addr}
	cmd, _, stderr := command(bin, env, "serve")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitStatus(t, "http://"+addr+"/livez", 200)
	waitStatus(t, "http://"+addr+"/readyz", 503)
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit %d; %s", code, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGINT")
	}
	if !strings.Contains(stderr.String(), "postgres does not answer at startup") ||
		!strings.Contains(stderr.String(), "database-only mode") {
		t.Fatalf("startup log: %s", stderr)
	}
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: never %d (last %v %v)", url, want, resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// `validator migrate -revoke-public-emit-message`: afterwards a role with no
// grants cannot write logical messages (forged heartbeats); a second run
// changes nothing; without the flag nothing is revoked.
func TestMigrateRevokePublicEmitMessage(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	ctx := context.Background()
	url := testenv.DB(t)
	_, strangerURL := newRole(t, url, "stranger_cmd_validator", "")
	emit := func() error {
		c, err := pgx.Connect(ctx, strangerURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, `SELECT pg_logical_emit_message(true, 'sessionguard.heartbeat', 'x')`)
		return err
	}
	env := []string{"DATABASE_URL=" + url}
	cmd, _, stderr := command(bin, env, "migrate")
	if code := exitCode(t, cmd.Run()); code != 0 || emit() != nil {
		t.Fatalf("migrate without the flag: exit %d, and PUBLIC must keep EXECUTE; %s", code, stderr)
	}
	for i, want := range []string{"revoked EXECUTE on pg_logical_emit_message from PUBLIC", "already not executable by PUBLIC"} {
		cmd, _, stderr := command(bin, env, "migrate", "-revoke-public-emit-message")
		if code := exitCode(t, cmd.Run()); code != 0 {
			t.Fatalf("run %d: exit %d; %s", i+1, code, stderr)
		}
		if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "GRANT EXECUTE ON FUNCTION") {
			t.Fatalf("run %d: log %s lacks %q and the GRANT for the invalidator's role", i+1, stderr, want)
		}
	}
	err := emit()
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("a role with no grants emitted after the revoke: %v", err)
	}
}

// `validator migrate` with SESSION_SOURCE=supabase creates only the
// publication on auth.sessions and logs it, then reports it present; a
// missing DELETE is logged at warn level with its GRANT; a database without
// the auth schema fails with the message that says so.
func TestMigrateSupabase(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	url := testenv.SupabaseDB(t)
	role, roleURL := newRole(t, url, "supabase_migrator_cmd", "REPLICATION BYPASSRLS",
		`GRANT USAGE ON SCHEMA auth TO %role`, `GRANT SELECT ON auth.sessions TO %role`)
	migrate := func(dbURL string) (int, string) {
		cmd, _, stderr := command(bin, []string{"DATABASE_URL=" + dbURL, "SESSION_SOURCE=supabase", "PUBLICATION=supabase_sessions"}, "migrate")
		return exitCode(t, cmd.Run()), stderr.String()
	}
	for i, want := range []string{"publication created", "publication present"} {
		code, log := migrate(url)
		if code != 0 || !strings.Contains(log, want) || !strings.Contains(log, `"table":"auth.sessions"`) || strings.Contains(log, "migrations applied") {
			t.Fatalf("run %d: exit %d, want %q for auth.sessions and no migration; %s", i+1, code, want, log)
		}
	}
	code, log := migrate(roleURL)
	if code != 0 || !strings.Contains(log, `"level":"warn"`) || !strings.Contains(log, `GRANT DELETE ON auth.sessions TO \"`+role+`\"`) {
		t.Fatalf("as a role without DELETE: exit %d, want 0 and a warning naming the GRANT; %s", code, log)
	}
	code, log = migrate(testenv.DB(t))
	if code != 1 || !strings.Contains(log, "no table auth.sessions: is DATABASE_URL the database the Supabase auth server writes to") {
		t.Fatalf("without the auth schema: exit %d; %s", code, log)
	}
}

// A validator whose role reads no row of auth.sessions (row security, no
// BYPASSRLS) would refuse every session as signed out: it does not start,
// and says in one line what to grant.
func TestServeSupabaseRefusesARoleThatReadsNoRows(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	role, roleURL := newRole(t, testenv.SupabaseDB(t), "supabase_reader_cmd", "",
		`GRANT USAGE ON SCHEMA auth TO %role`, `GRANT SELECT ON auth.sessions TO %role`)
	cmd, _, stderr := command(bin, []string{"DATABASE_URL=" + roleURL, "SESSION_SOURCE=supabase",
		"JWT_SECRET=" + testenv.SupabaseSecret, "LISTEN_ADDR=127.0.0.1:0"})
	code := exitCode(t, cmd.Run())
	out := strings.TrimSpace(stderr.String())
	if code != 1 || !strings.Contains(out, "ALTER ROLE \\\""+role+"\\\" BYPASSRLS") || strings.Count(out, "\n") != 0 {
		t.Fatalf("exit %d, want 1 and one line naming BYPASSRLS; %s", code, out)
	}
	if strings.Contains(out, testenv.SupabaseSecret) {
		t.Fatal("the JWT secret was logged")
	}
}

// newRole creates a login role on url's server with attrs and grants (each
// run on url's database as its superuser), dropped when the test ends, and
// returns its name and url with it as the user. Roles are cluster-wide:
// the name is unique per run (-count=2 reuses the cluster).
func newRole(t *testing.T, url, prefix, attrs string, grants ...string) (role, roleURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	role = fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e9)
	for _, sql := range append([]string{`CREATE ROLE ` + role + ` LOGIN ` + attrs}, grants...) {
		if _, err := conn.Exec(ctx, strings.ReplaceAll(sql, "%role", role)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = conn.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
		conn.Close(context.Background())
	})
	return role, strings.Replace(url, "postgres@", role+"@", 1)
}

// A table described by settings is checked against the catalog at start: a
// column that does not exist, or has a type the validator cannot read,
// stops it with one line naming the setting.
func TestServeTableRefusesABadMapping(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	url := testenv.DB(t)
	if err := testenv.CreateBetterAuthSchema(context.Background(), testenv.Pool(t, url)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"SESSION_TABLE_KEY=tokn"}, `SESSION_TABLE_KEY: table session has no column \"tokn\"`},
		{[]string{"SESSION_TABLE_KEY=token", "SESSION_TABLE_EXPIRES=userId"}, `SESSION_TABLE_EXPIRES: column \"userId\" of session is text`},
	} {
		env := append([]string{"DATABASE_URL=" + url, "SESSION_SOURCE=table", "SESSION_TABLE=session", "SESSION_TABLE_KEY_FORMAT=raw",
			"LISTEN_ADDR=127.0.0.1:0"}, tc.env...)
		cmd, _, stderr := command(bin, env)
		code := exitCode(t, cmd.Run())
		out := strings.TrimSpace(stderr.String())
		if code != 1 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 0 {
			t.Errorf("%v: exit %d, want 1 and one line with %s; %s", tc.env, code, tc.want, out)
		}
	}
}

// A named store's table that lacks a column the store creates stops the
// validator at start with one line naming it, not at the first request.
func TestServeStoreRefusesAnAlteredTable(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	url := testenv.DB(t)
	pool := testenv.Pool(t, url)
	if err := testenv.CreateDjangoSchema(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), `ALTER TABLE django_session DROP COLUMN expire_date`); err != nil {
		t.Fatal(err)
	}
	cmd, _, stderr := command(bin, []string{"DATABASE_URL=" + url, "SESSION_SOURCE=django", "LISTEN_ADDR=127.0.0.1:0"})
	code := exitCode(t, cmd.Run())
	out := strings.TrimSpace(stderr.String())
	if code != 1 || !strings.Contains(out, `table django_session has no column \"expire_date\"`) || strings.Count(out, "\n") != 0 {
		t.Fatalf("exit %d, want 1 and one line naming expire_date; %s", code, out)
	}
}
