// Command bench is sessionguard's benchmark suite (`make bench`): it starts
// a throwaway Postgres (with pg_stat_statements) and Redis, builds and runs
// the real validator and invalidator, creates the sessions, and drives
// open-loop load at fixed rates through GET /v1/auth for each scenario
// (database only, cache cold, warm from Redis, warm from the near cache)
// and for two baselines measured in the same run (a minimal Redis
// handler and a bare indexed SELECT handler). It also measures how long a
// revocation made with SQL takes to be refused, idle and under load. It
// writes a Markdown report and a latency plot (SVG).
//
//	go run ./cmd/bench                 # a few minutes; report in bench-report/
//	go run ./cmd/bench -quick          # a smoke run of about a minute
//	go run ./cmd/bench -rates 1000,4000 -duration 20s -out /tmp/r
//
// Nothing here touches the machine's own Postgres or Redis.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is one run's settings, from the flags.
type config struct {
	rates       []int         // offered validations per second, one run of each scenario at each
	duration    time.Duration // measured time of one run
	rounds      int           // times the whole sweep of scenarios and rates runs
	warmup      time.Duration // unmeasured load at the same rate just before
	sessions    int           // the warm set
	revocations int           // commit-to-refused measurements, idle and again under load
	revokeLoad  int           // validations per second during the loaded ones
	only        map[string]bool
	out         string
	log         io.Writer
	start       time.Time
}

func (c config) logf(format string, args ...any) {
	if c.log != nil {
		fmt.Fprintf(c.log, "bench %5.1fs: "+format+"\n", append([]any{time.Since(c.start).Seconds()}, args...)...)
	}
}

func (c config) selected(key string) bool { return c.only == nil || c.only[key] }

// coldTokens is how many sessions the cold scenario uses: one per request
// of all its runs, warm-ups included, with a margin.
func (c config) coldTokens() int {
	if !c.selected("cold") {
		return 0
	}
	n := 0
	for _, r := range c.rates {
		n += c.rounds * int(float64(r)*(c.duration+c.warmup).Seconds()*1.1)
	}
	return n + 100
}

func (c config) total() int { return c.sessions + 2*c.revocations + c.coldTokens() }

func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rates := fs.String("rates", "500,2000,5000", "offered validations per second, comma-separated: each scenario runs once at each")
	duration := fs.Duration("duration", 3*time.Second, "measured time of one scenario at one rate, in one round")
	rounds := fs.Int("rounds", 3, "times the whole sweep (every scenario at every rate) runs; the report gives the median and the range")
	warmup := fs.Duration("warmup", time.Second, "unmeasured load at the same rate just before each measured run")
	sessions := fs.Int("sessions", 10000, "sessions in the warm set (the cold scenario gets its own, one per request)")
	revs := fs.Int("revocations", 200, "commit-to-refused measurements, idle and again under load")
	revokeLoad := fs.Int("revoke-load", 2000, "validations per second while the loaded commit-to-refused measurements run")
	only := fs.String("scenarios", "", "comma-separated subset to run (db, cold, warm, near, minimal, select); empty: all")
	out := fs.String("out", "bench-report", "folder for report.md and latency.svg")
	quick := fs.Bool("quick", false, "a smoke run of about a minute, half of it building and starting the servers: rates 500,2000, one round of 1.5 s each, 30 revocations (explicit flags still win)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./cmd/bench [flags]\n\n"+
			"Benchmarks the validator under open-loop load against baselines measured in the\n"+
			"same run, and writes a Markdown report and an SVG latency plot.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["rates"] {
			*rates = "500,2000"
		}
		if !set["duration"] {
			*duration = 1500 * time.Millisecond
		}
		if !set["rounds"] {
			*rounds = 1
		}
		if !set["warmup"] {
			*warmup = 300 * time.Millisecond
		}
		if !set["sessions"] {
			*sessions = 2000
		}
		if !set["revocations"] {
			*revs = 30
		}
	}
	c := config{duration: *duration, rounds: *rounds, warmup: *warmup, sessions: *sessions, revocations: *revs,
		revokeLoad: *revokeLoad, out: *out, log: stderr, start: time.Now()}
	for _, f := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 100000 {
			return c, fmt.Errorf("-rates: %q is not a rate between 1 and 100000 per second", f)
		}
		c.rates = append(c.rates, n)
	}
	if *only != "" {
		c.only = map[string]bool{}
		for _, k := range strings.Split(*only, ",") {
			k = strings.TrimSpace(k)
			if !knownScenario(k) {
				return c, fmt.Errorf("-scenarios: unknown scenario %q", k)
			}
			c.only[k] = true
		}
	}
	switch {
	case c.duration < 100*time.Millisecond:
		return c, errors.New("-duration: at least 100ms")
	case c.rounds < 1:
		return c, errors.New("-rounds: at least 1")
	case c.warmup < 0:
		return c, errors.New("-warmup: not negative")
	case c.sessions < 1:
		return c, errors.New("-sessions: at least 1")
	case c.revocations < 0:
		return c, errors.New("-revocations: not negative")
	case c.revokeLoad < 0:
		return c, errors.New("-revoke-load: not negative")
	}
	return c, nil
}

func knownScenario(key string) bool {
	for _, s := range scenarios {
		if s.key == key {
			return true
		}
	}
	return false
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("report: %s\nplot:   %s\n", filepath.Join(cfg.out, "report.md"), filepath.Join(cfg.out, "latency.svg"))
	fmt.Print(rep.summary())
}

// bench runs everything cfg asks for and writes the report.
func bench(ctx context.Context, cfg config) (*report, error) {
	rep := &report{cfg: cfg, started: time.Now(), machine: describeMachine()}
	e, err := startEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	failed := true
	defer func() { e.close(failed) }()
	rep.versions(ctx, e)

	prepared := map[string]bool{}
	for round := range cfg.rounds {
		for _, rate := range cfg.rates {
			for i := range scenarios {
				sc := &scenarios[i]
				if !cfg.selected(sc.key) {
					continue
				}
				if sc.prepare != nil && !prepared[sc.key] {
					cfg.logf("preparing %s", sc.name)
					if err := sc.prepare(ctx, e, sc); err != nil {
						return nil, fmt.Errorf("%s: %w", sc.name, err)
					}
					prepared[sc.key] = true
				}
				cfg.logf("round %d/%d: %-32s at %5d/s for %v", round+1, cfg.rounds, sc.name, rate, cfg.duration)
				c, err := runCell(ctx, e, cfg, sc, rate)
				c.round = round
				if err != nil {
					return nil, fmt.Errorf("%s at %d/s: %w", sc.name, rate, err)
				}
				cfg.logf("    p50 %s  p99 %s  p99.9 %s  %.0f/s  errors %d", fmtDur(c.res.quantile(.5)), fmtDur(c.res.quantile(.99)),
					fmtDur(c.res.quantile(.999)), c.res.throughput(), c.res.errors)
				rep.cells = append(rep.cells, c)
				pause(ctx, 300*time.Millisecond)
			}
		}
	}

	if n := cfg.revocations; n > 0 {
		for i, load := range []int{0, cfg.revokeLoad} {
			if i == 1 && load == 0 {
				break
			}
			cfg.logf("commit-to-refused: %d revocations, %d validations/s meanwhile", n, load)
			r, err := commitToRefused(ctx, e, e.tokens.revoke[i*n:(i+1)*n], load)
			if err != nil {
				return nil, fmt.Errorf("commit-to-refused at %d/s: %w", load, err)
			}
			cfg.logf("    p50 %s  p99 %s  max %s  failures %d", fmtDur(r.quantile(.5)), fmtDur(r.quantile(.99)),
				fmtDur(r.quantile(1)), r.failures)
			rep.revs = append(rep.revs, r)
		}
	}
	rep.took = time.Since(rep.started)
	rep.machine.loadEnd = loadavg()
	if err := rep.write(cfg.out); err != nil {
		return nil, err
	}
	failed = false
	return rep, nil
}
