package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// TestBenchTiny runs the whole suite for real (Postgres, Redis, the built
// validator and invalidator, the baselines), tiny: one round at 200/s for
// 1.5 s per scenario and a few revocations. It checks that the report and
// the plot are written with every scenario, and that the counts the
// servers report make sense for what each scenario is.
func TestBenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres, Redis and both services")
	}
	out := t.TempDir()
	cfg := config{
		rates: []int{200}, duration: 1500 * time.Millisecond, warmup: 200 * time.Millisecond, rounds: 1,
		sessions: 300, revocations: 5, revokeLoad: 200, out: out, log: testLog{t}, start: time.Now(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := bench(ctx, cfg)
	if errors.Is(err, testenv.ErrMissing) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}

	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		want := 3 // latency, ratios to the baselines, cost
		if sc.baseline {
			want = 2 // no ratio of a baseline to itself
		}
		if n := strings.Count(string(md), "| "+sc.name+" |"); n != want {
			t.Errorf("report: %d rows for %q, want %d", n, sc.name, want)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "warm from Redis") {
		t.Errorf("latency.svg does not look like the plot: %.200s", svg)
	}

	between := func(what string, v, lo, hi float64) {
		t.Helper()
		if v < lo || v > hi {
			t.Errorf("%s = %.3f, want between %g and %g", what, v, lo, hi)
		}
	}
	for _, sc := range scenarios {
		cs := rep.cellsOf(sc.key, 200)
		if len(cs) != 1 {
			t.Fatalf("%s: %d runs, want 1", sc.name, len(cs))
		}
		c := cs[0]
		if c.res.errors != 0 || c.res.sent < 250 || c.res.quantile(.5) <= 0 {
			t.Errorf("%s: %d sent, %d errors, p50 %v", sc.name, c.res.sent, c.res.errors, c.res.quantile(.5))
		}
		k := costsOf(cs)
		switch sc.key {
		case "db":
			between("database only: Postgres lookups per validation", k.pgLookups, 0.95, 1.05)
			between("database only: Redis commands per validation", k.redisCmds, 0, 0.1)
			between("database only: hit rate", k.hitRate, 0, 0)
		case "cold":
			between("cache cold: Postgres lookups per validation", k.pgLookups, 0.95, 1.05)
			between("cache cold: Redis round trips per validation (lookup, fill)", k.redisTrips, 1, 2.1)
			between("cache cold: hit rate", k.hitRate, 0, 0.02)
		case "warm":
			between("warm from Redis: Postgres lookups per validation", k.pgLookups, 0, 0.02)
			between("warm from Redis: Redis round trips per validation", k.redisTrips, 0.95, 1.1)
			between("warm from Redis: hit rate", k.hitRate, 0.98, 1)
		case "near":
			between("near cache: Postgres lookups per validation", k.pgLookups, 0, 0.02)
			between("near cache: Redis round trips per validation (the invalidator's watermark scripts only)", k.redisTrips, 0, 0.05)
			between("near cache: hit rate", k.hitRate, 0.98, 1)
		case "minimal":
			between("minimal handler: Redis commands per validation", k.redisCmds, 0.95, 1.1)
			between("minimal handler: Postgres lookups per validation", k.pgLookups, 0, 0)
			between("minimal handler: hit rate", k.hitRate, 1, 1)
		case "select":
			between("bare SELECT: Postgres lookups per validation", k.pgLookups, 0.95, 1.05)
			between("bare SELECT: Redis commands per validation", k.redisCmds, 0, 0.1)
		}
	}
	if len(rep.revs) != 2 {
		t.Fatalf("%d commit-to-refused runs, want 2 (idle, loaded)", len(rep.revs))
	}
	for _, rv := range rep.revs {
		if rv.failures != 0 || len(rv.samples) != 5 || rv.quantile(.5) <= 0 {
			t.Errorf("commit to refused at %d/s: %d refused, %d failures, p50 %v", rv.load, len(rv.samples), rv.failures, rv.quantile(.5))
		}
	}
}

func TestParseCommandstats(t *testing.T) {
	c := parseCommandstats("# Commandstats\r\n" +
		"cmdstat_get:calls=3,usec=28,usec_per_call=9.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=2,usec=617,usec_per_call=308.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=7,usec=20,usec_per_call=2.86,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_config|resetstat:calls=1,usec=1572,usec_per_call=1572.00,rejected_calls=0,failed_calls=0\r\n")
	if c.all != 5 || c.scripts != 2 || c.roundTrips(true) != 2 || c.roundTrips(false) != 5 {
		t.Errorf("parsed %+v", c)
	}
}

func TestOpenLoopCountsFromScheduledTime(t *testing.T) {
	// One request in the middle stalls 200 ms while the rest answer at
	// once; the requests scheduled during the stall are not held back by
	// it (open loop), but every latency runs from its scheduled time.
	r := openLoop(context.Background(), 100, time.Second, func(ctx context.Context, i int) bool {
		if i == 50 {
			time.Sleep(200 * time.Millisecond)
		}
		return true
	})
	if r.sent != 100 || r.errors != 0 {
		t.Fatalf("sent %d, errors %d", r.sent, r.errors)
	}
	if mx := r.quantile(1); mx < 200*time.Millisecond {
		t.Errorf("max %v, want the stall's 200ms", mx)
	}
	if r.elapsed < 900*time.Millisecond {
		t.Errorf("elapsed %v for 100 requests at 100/s", r.elapsed)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]string{"-quick", "-rates", "100, 300", "-scenarios", "warm,minimal"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.rates) != 2 || c.rates[1] != 300 || c.rounds != 1 || c.duration != 1500*time.Millisecond || !c.selected("warm") || c.selected("db") {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range [][]string{{"-rates", "0"}, {"-scenarios", "near-ish"}, {"-rounds", "0"}, {"extra"}} {
		if _, err := parseConfig(bad, &strings.Builder{}); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// testLog sends the bench's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
