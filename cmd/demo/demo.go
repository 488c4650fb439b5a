package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/procs"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

const (
	readyTimeout = 60 * time.Second
	// revokeBudget is how long the revocation may take to reach the
	// validator before the step fails. In normal operation it takes
	// milliseconds; MAX_STALENESS (2s by default) is the worst case.
	revokeBudget = time.Second
)

// scenario is what differs between the demos: the sessions table the
// services follow, how the database gets it, and the story told about it.
// The demo owns everything else (servers, builds, services, clean-up).
type scenario interface {
	// title heads the output.
	title() string
	// env holds the settings of migrate, the validator and the
	// invalidator alike (SESSION_SOURCE).
	env() []string
	// validatorEnv holds the validator's own extra settings.
	validatorEnv() []string
	// schema lays the app database out, running d.migrate on the way.
	schema(ctx context.Context, d *demo, validatorBin string) error
	// walkthrough tells the story, step by step.
	walkthrough(ctx context.Context, d *demo) error
	// printTryIt prints how to reach everything, with a fresh session.
	printTryIt(ctx context.Context, d *demo) error
}

// demo owns everything the walkthrough starts, so close can stop it all.
type demo struct {
	out io.Writer
	sc  scenario

	dir         string // temporary folder: binaries and service logs
	pg          *testenv.Postgres
	redis       *testenv.Redis
	dbURL       string
	pool        *pgxpool.Pool // the demo's own connections, opened by db
	adminToken  string
	validator   *procs.Proc
	invalidator *procs.Proc
	services    []*procs.Proc
}

func (d *demo) step(n, total int, title string) {
	printf(d.out, "\n[%d/%d] %s\n", n, total, title)
}

func (d *demo) detail(format string, args ...any) {
	printf(d.out, "      "+format+"\n", args...)
}

// run sets everything up, walks through a session's life and, unless
// exitAfter, waits for Ctrl-C.
func (d *demo) run(ctx context.Context, exitAfter bool) error {
	title := d.sc.title()
	printf(d.out, "%s\n%s\n", title, strings.Repeat("=", len(title)))

	printf(d.out, "\nChecking prerequisites...\n")
	pre, err := checkPrereqs()
	if err != nil {
		return err
	}
	goVersion, _ := exec.Command(pre.goBin, "env", "GOVERSION").Output()
	d.detail("go           %s (%s)", strings.TrimSpace(string(goVersion)), pre.goBin)
	d.detail("postgres     %d (%s)", pre.pgVersion, pre.pgBinDir)
	d.detail("redis-server %s", pre.redisBin)

	if d.dir, err = os.MkdirTemp("", "sessionguard-demo-"); err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}

	printf(d.out, "\nStarting a throwaway PostgreSQL (wal_level=logical) and Redis on free ports...\n")
	if d.pg, err = testenv.StartPostgres(ctx); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if d.dbURL, err = d.pg.CreateDatabase(ctx, "app", ""); err != nil {
		return err
	}
	if d.redis, err = testenv.StartRedis(ctx); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	d.detail("postgres     %s  (data in %s)", d.dbURL, d.pg.Dir)
	d.detail("redis        %s", d.redis.URL())

	printf(d.out, "\nBuilding validator and invalidator into %s (the first build takes a minute)...\n", d.dir)
	bins, err := procs.Build(ctx, pre.goBin, pre.moduleRoot, d.dir, nil, nil)
	if err != nil {
		return err
	}

	if err := d.sc.schema(ctx, d, bins.Validator); err != nil {
		return err
	}

	if err := d.startServices(ctx, bins); err != nil {
		return err
	}

	if err := d.sc.walkthrough(ctx, d); err != nil {
		return err
	}
	if exitAfter {
		printf(d.out, "\nAll steps passed.\n")
		return nil
	}
	if err := d.sc.printTryIt(ctx, d); err != nil {
		return err
	}
	return d.wait(ctx)
}

// migrate runs `validator migrate` on the app database.
func (d *demo) migrate(ctx context.Context, validatorBin string) error {
	mig := exec.CommandContext(ctx, validatorBin, "migrate")
	mig.Env = append(append(procs.BaseEnv(), "DATABASE_URL="+d.dbURL, "LOG_LEVEL=warn"), d.sc.env()...)
	if out, err := mig.CombinedOutput(); err != nil {
		return fmt.Errorf("validator migrate: %s", commandError(out, err))
	}
	return nil
}

// commandError is the one line that says why a service's command failed:
// the error of its last structured log line, else its last line of output,
// else its exit status.
func commandError(out []byte, err error) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var entry struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(lines[i]), &entry) == nil && entry.Error != "" {
			return strings.Join(strings.Fields(entry.Error), " ")
		}
	}
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return last
	}
	return err.Error()
}

// db is a pool of the demo's own connections to the app database, opened
// on first use, for the SQL the walkthrough runs as any database writer
// would. It commits with synchronous_commit=on, the production default,
// whatever the server's setting: with it off, a commit reaches the
// replication stream only at the WAL writer's next flush, up to 200ms later.
func (d *demo) db(ctx context.Context) (*pgxpool.Pool, error) {
	if d.pool != nil {
		return d.pool, nil
	}
	cfg, err := pgxpool.ParseConfig(d.dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.MaxConns = 2
	if d.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("connect to the app database: %w", err)
	}
	return d.pool, nil
}

// startServices starts the validator and the invalidator, each on a free
// loopback port, and waits until both are ready.
func (d *demo) startServices(ctx context.Context, bins procs.Binaries) error {
	var err error
	if d.adminToken, err = session.NewToken(); err != nil {
		return fmt.Errorf("generate admin token: %w", err)
	}
	printf(d.out, "\nStarting the services (logs in %s)...\n", d.dir)
	venv := append([]string{
		"DATABASE_URL=" + d.dbURL,
		"REDIS_URL=" + d.redis.URL(),
		"ADMIN_TOKEN=" + d.adminToken,
	}, append(d.sc.env(), d.sc.validatorEnv()...)...)
	if d.validator, err = procs.Start(d.dir, "validator", bins.Validator, venv); err != nil {
		return err
	}
	d.services = append(d.services, d.validator)
	ienv := append([]string{
		"DATABASE_URL=" + d.dbURL,
		"REDIS_URL=" + d.redis.URL(),
	}, d.sc.env()...)
	if d.invalidator, err = procs.Start(d.dir, "invalidator", bins.Invalidator, ienv); err != nil {
		return err
	}
	d.services = append(d.services, d.invalidator)
	for _, s := range d.services {
		if err := s.WaitReady(ctx, readyTimeout); err != nil {
			return err
		}
		d.detail("%-12s %s  ready  (log: %s)", s.Name, s.URL, s.LogPath)
	}
	return nil
}

// api is a client of the validator, with the admin token.
func (d *demo) api() *client {
	return &client{base: d.validator.URL, admin: d.adminToken}
}

// wait blocks until Ctrl-C, or fails if a service dies on its own.
func (d *demo) wait(ctx context.Context) error {
	for {
		for _, s := range d.services {
			select {
			case <-s.Done():
				return fmt.Errorf("%s exited unexpectedly (%v)%s", s.Name, s.Err(), s.LogTail())
			default:
			}
		}
		select {
		case <-ctx.Done():
			printf(d.out, "\nStopping...\n")
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// close stops the services (SIGTERM, as an orchestrator would), then Redis
// and Postgres, and removes the temporary folders. After a failure the
// folder with the service logs is kept for reading.
func (d *demo) close(failed bool) {
	for i := len(d.services) - 1; i >= 0; i-- {
		d.services[i].Stop()
	}
	if d.pool != nil {
		d.pool.Close()
	}
	if d.redis != nil {
		_ = d.redis.Close()
	}
	if d.pg != nil {
		_ = d.pg.Close()
	}
	if d.dir != "" && procs.RemoveDir(d.dir, failed) {
		printf(os.Stderr, "service logs kept in %s\n", d.dir)
	}
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}
