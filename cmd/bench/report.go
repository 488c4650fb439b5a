package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report.go writes the Markdown report: the machine, the targets, one table
// of latencies and one of costs per rate, the commit-to-refused runs, and
// how everything was measured.

type report struct {
	cfg     config
	started time.Time
	took    time.Duration
	machine machine
	cells   []cell
	revs    []revocations
}

type machine struct {
	cpu, kernel, mem   string
	cores              int
	loadStart, loadEnd string
	goVersion          string
	postgres, redis    string
}

func describeMachine() machine {
	m := machine{cores: runtime.NumCPU(), goVersion: runtime.Version(), loadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			m.mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return m
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (r *report) versions(ctx context.Context, e *env) {
	_ = e.pool.QueryRow(ctx, `SHOW server_version`).Scan(&r.machine.postgres)
	if s, err := e.rdb.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				r.machine.redis = v
			}
		}
	}
}

// cellsOf are a scenario's runs at a rate, one per round.
func (r *report) cellsOf(key string, rate int) []cell {
	var out []cell
	for _, c := range r.cellsOfAll(key) {
		if c.rate == rate {
			out = append(out, c)
		}
	}
	return out
}

// cellsOfAll is every run of a scenario, at every rate.
func (r *report) cellsOfAll(key string) []cell {
	var out []cell
	for _, c := range r.cells {
		if c.sc.key == key {
			out = append(out, c)
		}
	}
	return out
}

// spread is one figure over the rounds: their median and range.
type spread struct {
	med, lo, hi float64
	n           int
}

func spreadOf(vals []float64) spread {
	if len(vals) == 0 {
		return spread{}
	}
	v := slices.Clone(vals)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{med: med, lo: v[0], hi: v[len(v)-1], n: len(v)}
}

func spreadCells(cs []cell, f func(cell) float64) spread {
	vals := make([]float64, len(cs))
	for i, c := range cs {
		vals[i] = f(c)
	}
	return spreadOf(vals)
}

// latency is a latency quantile over the rounds, in milliseconds.
func latency(cs []cell, q float64) spread {
	return spreadCells(cs, func(c cell) float64 { return ms(c.res.quantile(q)) })
}

// fmtMs is "1.3 ms", with the range over the rounds when there are several:
// "1.3 ms (1.1–2.0)".
func (s spread) fmtMs() string {
	if s.n == 0 {
		return "–"
	}
	out := fmtDur(time.Duration(s.med * float64(time.Millisecond)))
	if s.n > 1 {
		out += " (" + num(s.lo) + "–" + num(s.hi) + ")"
	}
	return out
}

// fmtX is a ratio, "1.08×", with its range over the rounds.
func (s spread) fmtX() string {
	if s.n == 0 {
		return "–"
	}
	out := fmt.Sprintf("%.2f×", s.med)
	if s.n > 1 {
		out += fmt.Sprintf(" (%.2f–%.2f)", s.lo, s.hi)
	}
	return out
}

// num is v with two decimals under 1, one under 100, none above.
func num(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// ratios are, round by round, f of each cell over f of the same round's
// cell of the baseline key.
func (r *report) ratios(cs []cell, key string, f func(cell) float64) spread {
	var vals []float64
	for _, c := range cs {
		for _, b := range r.cellsOf(key, c.rate) {
			if b.round == c.round && f(b) > 0 {
				vals = append(vals, f(c)/f(b))
			}
		}
	}
	return spreadOf(vals)
}

// costs are a scenario's counts summed over its rounds, per validation.
type costs struct {
	hitRate                                 float64 // -1: none
	pgLookups, pgAll, redisTrips, redisCmds float64
}

func costsOf(cs []cell) costs {
	var sent, lookups, all, trips, cmds int64
	var hits float64
	nh := 0
	for _, c := range cs {
		sent += int64(c.res.sent)
		lookups += c.pg.lookups
		all += c.pg.all
		trips += c.redis.roundTrips(c.sc.scripted)
		cmds += c.redis.all
		if c.hitRate >= 0 {
			hits += c.hitRate
			nh++
		}
	}
	k := costs{hitRate: -1}
	if nh > 0 {
		k.hitRate = hits / float64(nh)
	}
	if sent > 0 {
		n := float64(sent)
		k.pgLookups, k.pgAll, k.redisTrips, k.redisCmds = float64(lookups)/n, float64(all)/n, float64(trips)/n, float64(cmds)/n
	}
	return k
}

func fmtDur(d time.Duration) string {
	return num(float64(d)/float64(time.Millisecond)) + " ms"
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func per(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// targets are the goals, checked on this run.
type target struct {
	what, goal, measured, verdict string
}

func (r *report) targets() []target {
	var ts []target
	goals := []struct {
		load  int
		limit time.Duration
	}{{0, 10 * time.Millisecond}, {r.cfg.revokeLoad, 50 * time.Millisecond}}
	for _, g := range goals {
		what := "commit to refused, p99, idle"
		if g.load > 0 {
			what = fmt.Sprintf("commit to refused, p99, under %d validations/s", g.load)
		}
		t := target{what: what, goal: "≤ " + fmtDur(g.limit), measured: "not measured", verdict: "–"}
		for _, rv := range r.revs {
			if rv.load != g.load || len(rv.samples) == 0 {
				continue
			}
			t.measured = fmt.Sprintf("%s (%s of the limit)", fmtDur(rv.quantile(.99)), ratio(rv.quantile(.99), g.limit))
			t.verdict = "met"
			if rv.quantile(.99) > g.limit || rv.failures > 0 {
				t.verdict = "**missed**"
			}
		}
		ts = append(ts, t)
	}
	// Throughput shows only where the servers are saturated: the highest
	// offered rate.
	top := slices.Max(r.cfg.rates)
	t := target{what: fmt.Sprintf("near-cache throughput vs the minimal Redis handler, at %d/s offered", top), goal: "≥ 1.5×",
		measured: "not measured", verdict: "–"}
	tput := func(c cell) float64 { return c.res.throughput() }
	if s := r.ratios(r.cellsOf("near", top), "minimal", tput); s.n > 0 {
		t.measured, t.verdict = s.fmtX(), "met"
		switch {
		case spreadCells(r.cellsOf("minimal", top), tput).med >= 0.97*float64(top):
			// Open loop: while both keep up they answer what is offered.
			t.measured += " (both kept up with the offered rate: run higher -rates to saturate the baseline)"
			t.verdict = "–"
		case s.med < 1.5:
			t.verdict = "**missed**"
		}
	}
	ts = append(ts, t)
	k := costsOf(r.cellsOfAll("near"))
	t = target{what: "Redis round trips per warm validation, near cache", goal: "≤ 0.01", measured: "not measured", verdict: "–"}
	if k.hitRate >= 0 {
		t.measured, t.verdict = fmt.Sprintf("%.4f", k.redisTrips), "met"
		if k.redisTrips > 0.01 {
			t.verdict = "**missed**"
		}
	}
	ts = append(ts, t)
	return ts
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	w("# sessionguard benchmark\n\n")
	w("Generated by `make bench` (`go run ./cmd/bench`) on %s; the run took %s.\n\n",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second))
	w("**Machine.** %d CPU cores (%s), %s RAM, %s, Go %s, PostgreSQL %s, Redis %s. "+
		"Load average (1/5/15 min) %s at the start, %s at the end. "+
		"Every server and the load generator share these cores, so read the figures as ratios "+
		"between rows of one run, not as absolute capacity.\n\n",
		m.cores, orQ(m.cpu), orQ(m.mem), orQ(m.kernel), strings.TrimPrefix(m.goVersion, "go"), orQ(m.postgres), orQ(m.redis), m.loadStart, m.loadEnd)
	w("**Run.** Offered rates %s validations/s; each scenario at each rate: %v unmeasured warm-up, then %v measured, "+
		"in %d round(s) of the whole sweep (rates in turn, all scenarios at one rate back to back). "+
		"Figures are the median over the rounds, with their range in brackets. "+
		"%d sessions in the warm set; %d revocations idle and %d under %d validations/s.\n\n",
		joinInts(r.cfg.rates), r.cfg.warmup, r.cfg.duration, r.cfg.rounds, r.cfg.sessions, r.cfg.revocations, r.cfg.revocations, r.cfg.revokeLoad)

	w("## Targets\n\n| target | goal | this run | |\n|---|---|---|---|\n")
	for _, t := range r.targets() {
		w("| %s | %s | %s | %s |\n", t.what, t.goal, t.measured, t.verdict)
	}

	w("\n## Latency\n\n![Validation latency percentiles per scenario and rate, log scale](latency.svg)\n\n")
	w("Latency runs from each request's **scheduled** send time to its answer (open loop: a stall delays every request scheduled during it, and all of them count). " +
		"*answered/s* is the median throughput (answers per second of the measured window): below the offered rate, the server did not keep up.\n")
	for _, rate := range r.cfg.rates {
		w("\n### %d validations/s offered\n\n", rate)
		w("| scenario | p50 | p95 | p99 | p99.9 | max | answered/s | errors |\n")
		w("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for i := range scenarios {
			sc := &scenarios[i]
			cs := r.cellsOf(sc.key, rate)
			if len(cs) == 0 {
				continue
			}
			tput := spreadCells(cs, func(c cell) float64 { return c.res.throughput() })
			errs := 0
			for _, c := range cs {
				errs += c.res.errors
			}
			w("| %s | %s | %s | %s | %s | %s | %.0f | %d |\n", sc.name,
				latency(cs, .5).fmtMs(), latency(cs, .95).fmtMs(), latency(cs, .99).fmtMs(), latency(cs, .999).fmtMs(), latency(cs, 1).fmtMs(),
				tput.med, errs)
		}
	}

	w("\n## Ratios to the baselines\n\n")
	w("Each scenario's figure divided by the same figure of a baseline at the same rate in the same round; the median over the rounds, their range in brackets. " +
		"Below 1× is faster (or, for throughput, less) than the baseline. The validator's cache path compares with the minimal Redis handler, " +
		"its database path with the bare SELECT.\n\n")
	w("| rate | scenario | p50 ÷ minimal | p99 ÷ minimal | p50 ÷ SELECT | p99 ÷ SELECT | answered/s ÷ minimal |\n")
	w("|---:|---|---:|---:|---:|---:|---:|\n")
	q50 := func(c cell) float64 { return ms(c.res.quantile(.5)) }
	q99 := func(c cell) float64 { return ms(c.res.quantile(.99)) }
	tp := func(c cell) float64 { return c.res.throughput() }
	for _, rate := range r.cfg.rates {
		for i := range scenarios {
			sc := &scenarios[i]
			if sc.baseline {
				continue
			}
			cs := r.cellsOf(sc.key, rate)
			if len(cs) == 0 {
				continue
			}
			w("| %d | %s | %s | %s | %s | %s | %s |\n", rate, sc.name,
				r.ratios(cs, "minimal", q50).fmtX(), r.ratios(cs, "minimal", q99).fmtX(),
				r.ratios(cs, "select", q50).fmtX(), r.ratios(cs, "select", q99).fmtX(),
				r.ratios(cs, "minimal", tp).fmtX())
		}
	}

	w("\n## Cost per validation\n\n")
	w("Counted by the servers during the measured run only (statistics reset just before it): Postgres by `pg_stat_statements`, Redis by `INFO commandstats`. " +
		"*Lookups* are the session lookups (the validator's `SELECT ... LEFT JOIN sessions ...`, or the baseline's `SELECT`); *all statements* adds everything else in the database, " +
		"the invalidator's heartbeats included. Redis *commands* count those a Lua script runs too (the validator's lookup script runs `TIME` and three `GET`s); " +
		"*Round trips* are the commands clients sent: `INFO commandstats` cannot tell a script's commands from a client's, so for the validator, whose validation path sends " +
		"nothing but `EVALSHA`, this counts the `EVALSHA`/`EVAL` calls, and for the baselines every command.\n\n")
	w("| rate | scenario | hit rate | PG lookups/val | PG statements/val | Redis round trips/val | Redis commands/val |\n")
	w("|---:|---|---:|---:|---:|---:|---:|\n")
	for _, rate := range r.cfg.rates {
		for i := range scenarios {
			sc := &scenarios[i]
			cs := r.cellsOf(sc.key, rate)
			if len(cs) == 0 {
				continue
			}
			k := costsOf(cs)
			hit := "–"
			if k.hitRate >= 0 {
				hit = fmt.Sprintf("%.1f%%", 100*k.hitRate)
			}
			w("| %d | %s | %s | %s | %s | %s | %s |\n", rate, sc.name, hit,
				per(k.pgLookups), per(k.pgAll), per(k.redisTrips), per(k.redisCmds))
		}
	}

	if len(r.revs) > 0 {
		w("\n## Commit to refused\n\n")
		w("A session answered from the cache is revoked with `UPDATE sessions SET revoked_at = now() ...` on a separate connection (`synchronous_commit=on`); "+
			"from the moment the commit returns, an outside client polls `GET /v1/auth` (every %v plus its round trip) until the validator answers 401. "+
			"Under load, the validations run open loop on the warm set of the same validator.\n\n", pollInterval)
		w("| validations/s meanwhile | revocations | p50 | p90 | p95 | p99 | max | not refused within %v | background p99 |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", refuseBudget)
		for _, rv := range r.revs {
			bg := "–"
			if rv.load > 0 {
				bg = fmtDur(rv.bg.quantile(.99))
			}
			w("| %d | %d | %s | %s | %s | %s | %s | %d | %s |\n", rv.load, len(rv.samples)+rv.failures,
				fmtDur(rv.quantile(.5)), fmtDur(rv.quantile(.9)), fmtDur(rv.quantile(.95)), fmtDur(rv.quantile(.99)), fmtDur(rv.quantile(1)), rv.failures, bg)
		}
	}

	w("\n## Scenarios and method\n\n")
	for i := range scenarios {
		sc := &scenarios[i]
		w("- **%s**: %s.\n", sc.name, sc.what)
	}
	w("- Every request is `GET /v1/auth` with `Authorization: Bearer <token>` over keep-alive HTTP/1.1 on loopback. "+
		"The load generator schedules requests at fixed intervals and never waits for answers (at most %d in flight); "+
		"a request's latency starts at its scheduled time. Percentiles are exact (every latency kept and sorted).\n", maxInFlight)
	w("- The validator and the invalidator are the real binaries (built without the race detector), with their defaults "+
		"except `SESSION_CACHE_TTL=1h` (so the warm set stays warm); the baselines are handlers in the bench process, "+
		"with the validator's default pool sizes (%d Redis, %d Postgres connections).\n", baselinePoolSize, baselinePoolSize)
	w("- Postgres and Redis are throwaway servers on loopback (Postgres with `fsync=off`, `synchronous_commit` on, " +
		"`shared_preload_libraries=pg_stat_statements`, `wal_level=logical`).\n")
	return b.String()
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// write writes report.md and latency.svg into dir.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latency.svg"), []byte(r.plot()), 0o644)
}

// summary is what the command prints at the end.
func (r *report) summary() string {
	var b strings.Builder
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "%-60s %-8s %s %s\n", t.what, t.goal, t.measured, t.verdict)
	}
	return b.String()
}
