package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

const (
	readyTimeout = 60 * time.Second
	// revokeBudget is how long the revocation may take to reach the
	// validator before the step fails. In normal operation it takes
	// milliseconds; MAX_STALENESS (2s by default) is the worst case.
	revokeBudget = time.Second
	stopGrace    = 10 * time.Second
)

// demo owns everything the walkthrough starts, so close can stop it all.
type demo struct {
	out io.Writer

	dir         string // temporary folder: binaries and service logs
	pg          *testenv.Postgres
	redis       *testenv.Redis
	dbURL       string
	adminToken  string
	validator   *service
	invalidator *service
	services    []*service
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
	printf(d.out, "sessionguard local demo\n=======================\n")

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
	bins, err := d.build(ctx, pre)
	if err != nil {
		return err
	}

	printf(d.out, "\nApplying the schema: validator migrate\n")
	mig := exec.CommandContext(ctx, bins["validator"], "migrate")
	mig.Env = append(baseEnv(), "DATABASE_URL="+d.dbURL, "LOG_LEVEL=warn")
	if out, err := mig.CombinedOutput(); err != nil {
		return fmt.Errorf("validator migrate: %w\n%s", err, out)
	}
	d.detail("sessions table, replica identity and publication session_invalidation are in place")

	if err := d.startServices(ctx, bins); err != nil {
		return err
	}

	if err := d.walkthrough(ctx); err != nil {
		return err
	}
	if exitAfter {
		printf(d.out, "\nAll steps passed.\n")
		return nil
	}
	if err := d.printTryIt(ctx); err != nil {
		return err
	}
	return d.wait(ctx)
}

// build compiles the two commands of this repository.
func (d *demo) build(ctx context.Context, pre prereqs) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, pre.goBin, "build", "-o", d.dir+string(os.PathSeparator), "./cmd/validator", "./cmd/invalidator")
	cmd.Dir = pre.moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return map[string]string{
		"validator":   filepath.Join(d.dir, "validator"),
		"invalidator": filepath.Join(d.dir, "invalidator"),
	}, nil
}

func (d *demo) startServices(ctx context.Context, bins map[string]string) error {
	var err error
	if d.adminToken, err = session.NewToken(); err != nil {
		return fmt.Errorf("generate admin token: %w", err)
	}
	vport, err := testenv.FreePort()
	if err != nil {
		return err
	}
	iport, err := testenv.FreePort()
	if err != nil {
		return err
	}
	printf(d.out, "\nStarting the services (logs in %s)...\n", d.dir)
	d.validator, err = startService("validator", bins["validator"], d.dir, fmt.Sprintf("http://127.0.0.1:%d", vport), []string{
		"DATABASE_URL=" + d.dbURL,
		"REDIS_URL=" + d.redis.URL(),
		fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", vport),
		"ADMIN_TOKEN=" + d.adminToken,
	})
	if err != nil {
		return err
	}
	d.services = append(d.services, d.validator)
	d.invalidator, err = startService("invalidator", bins["invalidator"], d.dir, fmt.Sprintf("http://127.0.0.1:%d", iport), []string{
		"DATABASE_URL=" + d.dbURL,
		"REDIS_URL=" + d.redis.URL(),
		fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", iport),
	})
	if err != nil {
		return err
	}
	d.services = append(d.services, d.invalidator)
	for _, s := range d.services {
		if err := s.waitReady(ctx, readyTimeout); err != nil {
			return err
		}
		d.detail("%-12s %s  ready  (log: %s)", s.name, s.url, s.logPath)
	}
	return nil
}

// walkthrough is the part a newcomer reads: each step prints what it does
// and what it saw, and fails loudly when the system does not behave.
func (d *demo) walkthrough(ctx context.Context) error {
	const total = 6
	api := &client{base: d.validator.url, admin: d.adminToken}

	d.step(1, total, "Waiting for the invalidator's first watermark (the validator serves from Redis only while it is fresh)")
	start := time.Now()
	if err := api.waitFresh(ctx, 30*time.Second); err != nil {
		return fmt.Errorf("step 1: %w%s", err, tail(d.invalidator.logPath, 20))
	}
	d.detail("fresh after %s: GET %s/api/health/redis says sessionCache.invalidator.fresh = true", ms(time.Since(start)), d.validator.url)

	d.step(2, total, "Create a session through the admin API")
	userID := uuid.NewString()
	token, sess, err := api.create(ctx, userID, "1h")
	if err != nil {
		return fmt.Errorf("step 2: %w", err)
	}
	d.detail("POST /v1/sessions {\"user_id\":%q,\"ttl\":\"1h\"}  ->  201", userID)
	d.detail("session id %s, token %s... (shown once; only its SHA-256 is stored)", sess.ID, token[:8])
	// The invalidator drops any cache entry for a new row's token hash (a
	// remembered "invalid"), and with it any fill in flight: wait for that,
	// so step 3 shows a miss and then a hit rather than racing it.
	start = time.Now()
	for {
		h, err := getInvalidatorHealth(ctx, d.invalidator.url)
		if err == nil && h.Events.Inserts >= 1 {
			break
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("step 2: the invalidator did not apply the INSERT within 10s (health error: %v)%s", err, tail(d.invalidator.logPath, 20))
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.detail("the invalidator read the INSERT from the WAL %s after the answer", ms(time.Since(start)))

	d.step(3, total, "Validate it twice: first from Postgres (cache miss), then from Redis (cache hit)")
	for i, want := range []string{"database", "cache"} {
		v, took, err := api.validate(ctx, token)
		if err != nil {
			return fmt.Errorf("step 3: %w", err)
		}
		if v.status != 200 || !v.Valid || v.Source != want {
			return fmt.Errorf("step 3: validation %d: want 200 valid from %s, got %d valid=%v source=%q error=%q", i+1, want, v.status, v.Valid, v.Source, v.Error)
		}
		d.detail("POST /v1/sessions/validate  ->  200 valid, source=%-8s  %s", v.Source, ms(took))
	}

	d.step(4, total, "Revoke it with plain SQL, behind the service's back, and poll validate until it is refused")
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return fmt.Errorf("step 4: connect: %w", err)
	}
	defer conn.Close(context.Background())
	// Measure with synchronous_commit=on, the production default, whatever
	// the server's setting: with it off, a commit reaches the replication
	// stream only at the WAL writer's next flush, up to 200ms later.
	if _, err := conn.Exec(ctx, `SET synchronous_commit = on`); err != nil {
		return fmt.Errorf("step 4: %w", err)
	}
	d.detail("psql> UPDATE sessions SET revoked_at = now() WHERE id = '%s';", sess.ID)
	tag, err := conn.Exec(ctx, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, sess.ID)
	if err != nil {
		return fmt.Errorf("step 4: revoke with SQL: %w", err)
	}
	committed := time.Now()
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("step 4: revoke with SQL updated %d rows, want 1", tag.RowsAffected())
	}
	took, polls, err := api.pollUntilRefused(ctx, token, committed, revokeBudget)
	if err != nil {
		return fmt.Errorf("step 4: %w%s", err, tail(d.invalidator.logPath, 20))
	}
	d.detail("committed; validate answered 401 invalid_token %s after the commit (%d polls)", ms(took), polls)
	d.detail("the invalidator read the UPDATE from the WAL and dropped the Redis entry; without it the cache would say valid for up to SESSION_CACHE_TTL")

	d.step(5, total, "Validate once more: refused, whoever asks")
	v, _, err := api.validate(ctx, token)
	if err != nil {
		return fmt.Errorf("step 5: %w", err)
	}
	if v.status != 401 {
		return fmt.Errorf("step 5: want 401, got %d", v.status)
	}
	d.detail("POST /v1/sessions/validate  ->  401 {\"valid\":false,\"error\":%q}", v.Error)

	d.step(6, total, "The invalidator's view: GET "+d.invalidator.url+"/health")
	h, err := getInvalidatorHealth(ctx, d.invalidator.url)
	if err != nil {
		return fmt.Errorf("step 6: %w", err)
	}
	d.detail("status=%s role=%s slot=%s publication=%s", h.Status, h.Role, h.Slot, h.Publication)
	d.detail("lag: %d bytes, %.3f s   confirmed flush %s / server WAL %s", h.Lag.Bytes, h.Lag.Seconds, h.ConfirmedFlushLsn, h.ServerWalLsn)
	d.detail("events: applied=%d inserts=%d updates=%d deletes=%d truncates=%d", h.Events.Applied, h.Events.Inserts, h.Events.Updates, h.Events.Deletes, h.Events.Truncates)
	if h.Status == "unhealthy" {
		return errors.New("step 6: the invalidator reports itself unhealthy")
	}
	return nil
}

// printTryIt prints how to reach everything, with a fresh session to play
// with.
func (d *demo) printTryIt(ctx context.Context) error {
	api := &client{base: d.validator.url, admin: d.adminToken}
	userID := uuid.NewString()
	token, sess, err := api.create(ctx, userID, "1h")
	if err != nil {
		return fmt.Errorf("create a session to try: %w", err)
	}
	v, i := d.validator.url, d.invalidator.url
	printf(d.out, `
Everything is running. Ctrl-C stops it all and removes the temporary files.

  validator    %s    log: %s
  invalidator  %s    log: %s
  postgres     %s
  redis        %s
  admin token  %s

A fresh session to try (user %s, session %s):

  export V=%s I=%s
  export ADMIN=%s
  export TOKEN=%s

  curl -s -X POST $V/v1/sessions/validate -H "Authorization: Bearer $TOKEN"
  curl -s -i $V/v1/auth --cookie "session=$TOKEN"
  curl -s -X POST $V/v1/sessions -H "Authorization: Bearer $ADMIN" -d '{"user_id":"%s","ttl":"24h"}'
  curl -s -X DELETE -i $V/v1/sessions/%s -H "Authorization: Bearer $ADMIN"
  curl -s -X DELETE $V/v1/users/%s/sessions -H "Authorization: Bearer $ADMIN"
  curl -s $V/api/health/redis
  curl -s $I/health
  curl -s $V/metrics | grep -v '^#' | head

  psql '%s' -c "UPDATE sessions SET revoked_at = now() WHERE user_id = '%s'"
  psql '%s' -c "TRUNCATE sessions"
`, v, d.validator.logPath, i, d.invalidator.logPath, d.dbURL, d.redis.URL(), d.adminToken,
		userID, sess.ID, v, i, d.adminToken, token, userID, sess.ID, userID, d.dbURL, userID, d.dbURL)
	return nil
}

// wait blocks until Ctrl-C, or fails if a service dies on its own.
func (d *demo) wait(ctx context.Context) error {
	for {
		for _, s := range d.services {
			select {
			case <-s.exited:
				return fmt.Errorf("%s exited unexpectedly (%v)%s", s.name, s.err, tail(s.logPath, 20))
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
		d.services[i].stop(stopGrace)
	}
	if d.redis != nil {
		_ = d.redis.Close()
	}
	if d.pg != nil {
		_ = d.pg.Close()
	}
	if d.dir == "" {
		return
	}
	if failed {
		printf(os.Stderr, "service logs kept in %s\n", d.dir)
		// The binaries are large and of no use for the post-mortem.
		_ = os.Remove(filepath.Join(d.dir, "validator"))
		_ = os.Remove(filepath.Join(d.dir, "invalidator"))
		return
	}
	_ = os.RemoveAll(d.dir)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}
