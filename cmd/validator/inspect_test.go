package main_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// inspectReport is the part of `validator inspect -json` the tests read.
type inspectReport struct {
	Checked       int            `json:"checked"`
	Disagreeing   int            `json:"disagreeing"`
	Counts        map[string]int `json:"counts"`
	Disagreements []struct {
		Kind      string `json:"kind"`
		SessionID string `json:"session_id"`
		KeyHash   string `json:"key_hash"`
		RedisKey  string `json:"redis_key"`
	} `json:"disagreements"`
}

// `validator inspect` on a cache that agrees with Postgres exits 0; with a
// revoked session cached valid (no invalidator running) and a valid one
// cached invalid it exits 1 and names both, in text and in JSON, without a
// token.
func TestInspect(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	for _, src := range append(testenv.Sources(), testenv.ByIDSources()...) {
		t.Run(src.Name, func(t *testing.T) {
			t.Parallel()
			w := src.NewWorld(t, "")
			env := []string{"DATABASE_URL=" + w.URL, "REDIS_URL=" + w.Redis.URL(), "MAX_STALENESS=200ms", "SESSION_SOURCE=" + src.Name}
			inspect := func(args ...string) (int, string, string) {
				cmd, stdout, stderr := command(bin, env, append([]string{"inspect"}, args...)...)
				return exitCode(t, cmd.Run()), stdout.String(), stderr.String()
			}
			token, _ := src.NewSession(t, w)
			w.Plant(t, token, w.Row(t, token))
			if code, out, errs := inspect(); code != 0 || !strings.Contains(out, "Checked 1 cache entries") || !strings.Contains(out, "All agree") {
				t.Fatalf("agreeing: exit %d\n%s%s", code, out, errs)
			}

			stale, staleID := src.NewSession(t, w)
			w.Plant(t, stale, w.Row(t, stale))
			w.Exec(t, src.Revoke, staleID)
			refused, refusedID := src.NewSession(t, w)
			w.Plant(t, refused, nil)
			code, out, errs := inspect("-sample", "10")
			if code != 1 || !strings.Contains(out, "2 disagree") || !strings.Contains(out, staleID) || !strings.Contains(out, refusedID) {
				t.Fatalf("disagreeing: exit %d\n%s%s", code, out, errs)
			}
			code, js, errs := inspect("-all", "-json")
			if code != 1 {
				t.Fatalf("-json: exit %d\n%s%s", code, js, errs)
			}
			var r inspectReport
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatalf("-json output %q: %v", js, err)
			}
			kinds := map[string]string{}
			for _, d := range r.Disagreements {
				kinds[d.SessionID] = d.Kind
			}
			revoked := "missing"
			if src.Name == "sessionguard" {
				revoked = "revoked"
			}
			if r.Checked != 3 || r.Disagreeing != 2 || kinds[staleID] != revoked || kinds[refusedID] != "negative" || r.Counts["negative"] != 1 {
				t.Fatalf("-json report %s", js)
			}
			for _, tok := range []string{token, stale, refused} {
				if secret := strings.Split(tok, ".")[0]; strings.Contains(js, secret) || strings.Contains(out, secret) {
					t.Fatalf("a token is in the output:\n%s\n%s", out, js)
				}
			}
		})
	}
}

// Bad flags exit 2 with one line; a Redis that does not answer exits 3.
func TestInspectUsageAndUnreadable(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	db, rd := "DATABASE_URL=postgres://u@127.0.0.1:1/app", "REDIS_URL=redis://127.0.0.1:1/0"
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{db, rd}, []string{"-sample", "many"}, "-sample"},
		{[]string{db, rd}, []string{"-sample", "0"}, "at least 1"},
		{[]string{db, rd}, []string{"-all", "-sample", "5"}, "exclude each other"},
		{[]string{db}, nil, "REDIS_URL is required"},
	} {
		cmd, stdout, stderr := command(bin, c.env, append([]string{"inspect"}, c.args...)...)
		if code := exitCode(t, cmd.Run()); code != 2 {
			t.Fatalf("%v: exit %d, want 2; %s", c.args, code, stderr)
		}
		if line := stderr.String(); strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "validator: ") || !strings.Contains(line, c.want) || stdout.Len() != 0 {
			t.Fatalf("%v: stderr %q, want one line with %q", c.args, line, c.want)
		}
	}
	w := testenv.NewWorld(t, "")
	cmd, _, stderr := command(bin, []string{"DATABASE_URL=" + w.URL, rd, "LOG_LEVEL=error"}, "inspect")
	if code := exitCode(t, cmd.Run()); code != 3 || !strings.Contains(stderr.String(), "validator inspect: cannot inspect the cache: read redis") {
		t.Fatalf("redis down: exit %d; %s", code, stderr)
	}
	cmd, _, stderr = command(bin, []string{db, "REDIS_URL=" + w.Redis.URL(), "LOG_LEVEL=error"}, "inspect")
	if code := exitCode(t, cmd.Run()); code != 3 || !strings.Contains(stderr.String(), "read postgres") {
		t.Fatalf("postgres down: exit %d; %s", code, stderr)
	}
}

// Settings a table does not match exit 2 with one line; a report that
// cannot be written, and an inspection interrupted, exit 4: 3 is only for
// Redis or Postgres that cannot be read.
func TestInspectExitStatus(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	w := testenv.NewWorld(t, "")
	if _, err := w.Pool.Exec(context.Background(), `CREATE TABLE app_sessions (token text PRIMARY KEY, expires timestamptz)`); err != nil {
		t.Fatal(err)
	}
	base := []string{"DATABASE_URL=" + w.URL, "REDIS_URL=" + w.Redis.URL(), "LOG_LEVEL=error"}
	table := append(base[:len(base):len(base)], "SESSION_SOURCE=table", "SESSION_TABLE=app_sessions", "SESSION_TABLE_KEY_FORMAT=raw")
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"SESSION_TABLE_KEY=tokn"}, `SESSION_TABLE_KEY: table app_sessions has no column "tokn"`},
		{[]string{"SESSION_TABLE_KEY=token", "SESSION_TIMEBOX=1h"}, "SESSION_TIMEBOX needs a creation time column"},
	} {
		cmd, stdout, stderr := command(bin, append(table, c.env...), "inspect")
		code := exitCode(t, cmd.Run())
		if line := stderr.String(); code != 2 || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "validator: ") ||
			!strings.Contains(line, c.want) || stdout.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", c.env, code, line, c.want)
		}
	}

	token, _ := w.NewSession(t)
	w.Plant(t, token, w.Row(t, token))
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	cmd, _, stderr := command(bin, base, "inspect")
	cmd.Stdout = full
	if code := exitCode(t, cmd.Run()); code != 4 || !strings.Contains(stderr.String(), "validator inspect: write the report") {
		t.Fatalf("stdout full: exit %d; %s", code, stderr)
	}

	stale, id := w.NewSession(t)
	w.Plant(t, stale, w.Row(t, stale))
	w.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
	cmd, _, stderr = command(bin, append(base, "MAX_STALENESS=1m"), "inspect") // a long grace
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd.Wait()); code != 4 || !strings.Contains(stderr.String(), "validator inspect: interrupted") {
		t.Fatalf("SIGINT: exit %d; %s", code, stderr)
	}
}
