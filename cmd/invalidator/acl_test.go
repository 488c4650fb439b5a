package main_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/app"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// Both processes under the documented Redis ACL users (deploy/redis/acl.redis):
// the validator serves from the cache, a revocation is refused within
// milliseconds, a lost generation key is started again by the invalidator
// alone, `validator inspect` reads what it compares, and neither process
// meets a permission error.
func TestUnderRedisACLUsers(t *testing.T) {
	bin := build(t)
	w := newWorld(t, testenv.Sources()[0])
	validatorURL, invalidatorURL := testenv.LoadACL(t, w.Redis)
	p := w.startOn(t, bin, invalidatorURL, "INSPECT_INTERVAL=200ms")
	v := w.newValidator(t, map[string]string{"REDIS_URL": validatorURL})
	validate, fromCache := v.Validate, v.FromCache
	ctx := context.Background()

	tok, id := w.NewSession(t)
	fromCache(tok)
	w.Exec(t, w.src.Revoke, id)
	testenv.WaitFor(t, time.Second, "the revoked session refused", func() bool {
		valid, _ := validate(tok)
		return !valid
	})

	// The generation key lost (evicted, deleted): the validator may not
	// start a namespace, so it answers from Postgres until the invalidator's
	// next heartbeat starts one, then from the cache again.
	if err := w.RDB.Del(ctx, "sg:gen").Err(); err != nil {
		t.Fatal(err)
	}
	tok2, _ := w.NewSession(t)
	if valid, _ := validate(tok2); !valid {
		t.Fatal("a valid session refused after the generation key was lost")
	}
	fromCache(tok2)

	// `validator inspect` reads all it compares under the validator's user.
	all := map[string]string{"DATABASE_URL": w.URL, "PUBLICATION": w.src.Publication, "REDIS_URL": validatorURL}
	icfg, err := config.LoadInspect([]string{"-all"}, func(k string) string { return all[k] })
	if err != nil {
		t.Fatal(err)
	}
	report, err := app.Inspect(ctx, icfg, io.Discard)
	if err != nil {
		t.Fatalf("validator inspect under the validator's Redis user: %v", err)
	}
	if report.Checked == 0 || len(report.Disagreements) != 0 {
		t.Fatalf("inspect checked %d entries, %d disagreements; want some entries, none disagreeing", report.Checked, len(report.Disagreements))
	}

	// So does the invalidator's sampled check.
	testenv.WaitFor(t, 10*time.Second, "the invalidator's sampled check to compare entries", func() bool {
		return sumMetric(t, "http://"+p.addr+"/metrics", "sessionguard_invalidator_inspect_checked_total") > 0
	})
	for _, m := range []struct{ url, name string }{
		{v.URL + "/metrics", "sessionguard_cache_errors_total"},
		{"http://" + p.addr + "/metrics", "sessionguard_invalidator_redis_errors_total"},
		{"http://" + p.addr + "/metrics", "sessionguard_invalidator_inspect_errors_total"},
	} {
		if n := sumMetric(t, m.url, m.name); n != 0 {
			t.Errorf("%s = %v under the ACL users, want 0 (a permission error?)", m.name, n)
		}
	}
}

// sumMetric adds up every sample of the metric name at a /metrics URL.
func sumMetric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			f := strings.Fields(rest)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", url, line, err)
			}
			sum += v
		}
	}
	return sum
}
