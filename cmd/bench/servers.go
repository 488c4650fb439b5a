package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/procs"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// servers.go starts everything the benchmark measures: a throwaway Postgres
// (with pg_stat_statements) and Redis, the real validator and invalidator
// binaries, and the bench's own connections to both servers.

// env is everything one benchmark run owns; close stops it all.
type env struct {
	dir   string // temporary folder: binaries and service logs
	pg    *testenv.Postgres
	redis *testenv.Redis
	dbURL string

	pool *pgxpool.Pool // the bench's own: seeding, statistics, revocations
	rdb  *redis.Client // the bench's own: CONFIG RESETSTAT, INFO, baseline keys

	validator   *procs.Proc // cache on (the default configuration)
	validatorDB *procs.Proc // SESSION_CACHE_ENABLED=false
	// validatorNear has the near cache; validator has none (NEAR_CACHE_SIZE=0).
	validatorNear *procs.Proc
	invalidator   *procs.Proc
	procs         []*procs.Proc

	baselines *baselines

	tokens tokenSets
	client *http.Client // the load generator's and the poller's
}

// pgSettings are the bench's server settings on top of testenv's defaults
// (which already include wal_level=logical): pg_stat_statements counts the
// statements of each scenario.
var pgSettings = []string{
	"shared_preload_libraries=pg_stat_statements",
	"pg_stat_statements.max=1000",
	"pg_stat_statements.track=all",
}

// startEnv starts the servers, builds and starts the services, creates the
// sessions and the baselines' handlers.
func startEnv(ctx context.Context, cfg config) (e *env, err error) {
	e = &env{}
	defer func() {
		if err != nil {
			e.close(true)
			e = nil
		}
	}()
	if e.dir, err = os.MkdirTemp("", "sessionguard-bench-"); err != nil {
		return e, err
	}
	cfg.logf("starting Postgres (pg_stat_statements, wal_level=logical) and Redis on free ports")
	if e.pg, err = testenv.StartPostgresWith(ctx, pgSettings...); err != nil {
		return e, fmt.Errorf("start postgres: %w", err)
	}
	if e.dbURL, err = e.pg.CreateDatabase(ctx, "app", ""); err != nil {
		return e, err
	}
	if e.redis, err = testenv.StartRedis(ctx); err != nil {
		return e, fmt.Errorf("start redis: %w", err)
	}

	cfg.logf("building validator and invalidator")
	bins, err := build(ctx, e.dir)
	if err != nil {
		return e, err
	}
	if err := run(ctx, bins.Validator, []string{"DATABASE_URL=" + e.dbURL, "LOG_LEVEL=warn"}, "migrate"); err != nil {
		return e, err
	}

	pcfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		return e, err
	}
	// A revocation commits as production would, whatever the server says.
	pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pcfg.MaxConns = 4
	if e.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return e, err
	}
	if _, err := e.pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return e, fmt.Errorf("create extension pg_stat_statements: %w", err)
	}
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), PoolSize: 4})

	// The sessions go in before the invalidator creates its slot, so it
	// does not have to stream a hundred thousand inserts first.
	cfg.logf("creating %d sessions (%d for the warm set, %d to revoke, %d never validated before their cold request)",
		cfg.total(), cfg.sessions, cfg.revocations*2, cfg.coldTokens())
	if e.tokens, err = seed(ctx, e.pool, cfg); err != nil {
		return e, err
	}

	cfg.logf("starting the validators (cache on, cache off) and the invalidator")
	common := []string{"DATABASE_URL=" + e.dbURL, "REDIS_URL=" + e.redis.URL()}
	// Without its sampled check, whose row reads would count as lookups.
	if e.invalidator, err = e.start("invalidator", bins.Invalidator, append(common, "INSPECT_INTERVAL=0")); err != nil {
		return e, err
	}
	// TTL of an hour: the warm set stays warm for the whole run.
	if e.validator, err = e.start("validator", bins.Validator, append(common, "SESSION_CACHE_TTL=1h", "NEAR_CACHE_SIZE=0")); err != nil {
		return e, err
	}
	nearSize := fmt.Sprintf("NEAR_CACHE_SIZE=%d", 2*cfg.sessions)
	if e.validatorNear, err = e.start("validator-near", bins.Validator, append(common, "SESSION_CACHE_TTL=1h", nearSize)); err != nil {
		return e, err
	}
	if e.validatorDB, err = e.start("validator-db-only", bins.Validator, append(common, "SESSION_CACHE_ENABLED=false")); err != nil {
		return e, err
	}
	for _, p := range e.procs {
		if err := p.WaitReady(ctx, 60*time.Second); err != nil {
			return e, err
		}
	}
	e.client = newClient()
	if err := e.waitCacheTrusted(ctx); err != nil {
		return e, err
	}
	if e.baselines, err = startBaselines(ctx, e); err != nil {
		return e, err
	}
	return e, nil
}

// build compiles the two commands of this repository (no race detector,
// as deployed).
func build(ctx context.Context, dir string) (procs.Binaries, error) {
	root, err := procs.ModuleRoot("go", "bench")
	if err != nil {
		return procs.Binaries{}, err
	}
	return procs.Build(ctx, "go", root, dir, []string{"-trimpath"}, []string{"CGO_ENABLED=0"})
}

// run runs a command to completion (validator migrate).
func run(ctx context.Context, bin string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(procs.BaseEnv(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

// start starts a service on a free loopback port.
func (e *env) start(name, bin string, env []string) (*procs.Proc, error) {
	p, err := procs.Start(e.dir, name, bin, env)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// waitCacheTrusted waits until the cached validator answers a warm token
// from Redis: the invalidator's watermark has made its first round trip.
func (e *env) waitCacheTrusted(ctx context.Context) error {
	tok := e.tokens.warm[0]
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		src, err := validateSource(ctx, e.client, e.validator.URL, tok)
		if err == nil && src == "cache" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the validator never answered from the cache within 30s (is the invalidator's watermark moving? logs in %s)", e.dir)
}

// close stops the services, the baselines and the servers; after a failure
// the service logs are kept.
func (e *env) close(failed bool) {
	if e.baselines != nil {
		e.baselines.close()
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].Stop()
	}
	if e.pool != nil {
		e.pool.Close()
	}
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
	if e.redis != nil {
		_ = e.redis.Close()
	}
	if e.pg != nil {
		_ = e.pg.Close()
	}
	if e.dir != "" && procs.RemoveDir(e.dir, failed) {
		fmt.Fprintf(os.Stderr, "bench: service logs kept in %s\n", e.dir)
	}
}

// tokenSets are the tokens of the sessions seed created.
type tokenSets struct {
	warm   []string // validated by the warm, database-only and baseline scenarios
	revoke []string // revoked one by one by the commit-to-refused runs
	cold   []string // each validated once, by the cold scenario
	// coldNext is the next unused cold token.
	coldNext *atomic.Int64
}

// seed creates the sessions with one INSERT ... SELECT: token i is
// prefix+i, its hash computed by Postgres as the schema stores it.
func seed(ctx context.Context, pool *pgxpool.Pool, cfg config) (tokenSets, error) {
	var salt [6]byte
	_, _ = rand.Read(salt[:])
	prefix := "bench-" + hex.EncodeToString(salt[:]) + "-"
	n := cfg.total()
	_, err := pool.Exec(ctx, `INSERT INTO sessions (user_id, token_hash, expires_at)
		SELECT gen_random_uuid(), sha256(convert_to($1 || i::text, 'UTF8')), now() + interval '1 day'
		FROM generate_series(0, $2::int - 1) i`, prefix, n)
	if err != nil {
		return tokenSets{}, fmt.Errorf("create sessions: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE sessions`); err != nil {
		return tokenSets{}, err
	}
	all := make([]string, n)
	for i := range all {
		all[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	w, r := cfg.sessions, cfg.revocations*2
	return tokenSets{warm: all[:w], revoke: all[w : w+r], cold: all[w+r:], coldNext: new(atomic.Int64)}, nil
}
