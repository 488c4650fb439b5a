package main_test

import (
	"encoding/json"
	"strings"
	"testing"

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
