package cdc_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// nearValidator is a validator with a near cache on the env's Redis,
// following the notice channel.
func (e *env) nearValidator(t *testing.T) (*validation.Service, prometheus.Gatherer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	svc := validation.New(e.Store, validation.Options{Credentials: e.Creds, Cache: e.Cache, CacheEnabled: true,
		MaxStaleness: testenv.WorldStaleness, Identity: e.Identity, NearCacheSize: 1000, Metrics: validation.NewMetrics(reg)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.FollowNotices(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc, reg
}

// evalshaCalls is how many scripts Redis has run.
func (e *env) evalshaCalls(t *testing.T) int {
	t.Helper()
	info, err := e.RDB.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// The near cache answers warm validations without Redis, and every
// guarantee still holds through it: a revocation is refused within the
// bound, a broken notice channel empties it, and a stopped invalidator
// stops it serving once the watermark is older than MAX_STALENESS.
func TestNearCache(t *testing.T) {
	t.Parallel()
	eachSourceOf(t, withByID, func(t *testing.T, src *testenv.Source) {
		e := newSourceEnv(t, src, "")
		_, stopConsumer := e.consumer(t, nil)
		svc, reg := e.nearValidator(t)
		ctx := context.Background()
		validate := func(token string) validation.Result {
			r, err := svc.Validate(ctx, token)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		warmNear := func(token string) {
			t.Helper()
			testenv.WaitFor(t, 20*time.Second, "the session served from the near cache", func() bool {
				before := testenv.Counter(t, reg, "sessionguard_near_cache_hits_total", "")
				r := validate(token)
				return r.Valid && testenv.Counter(t, reg, "sessionguard_near_cache_hits_total", "") > before
			})
		}

		token, id := e.NewSession(t)
		e.Warm(t, token)
		warmNear(token)
		// Served without Redis: no script runs for 200 validations.
		before := e.evalshaCalls(t)
		for range 200 {
			if r := validate(token); !r.Valid || r.Source != validation.SourceCache {
				t.Fatalf("warm validation = %+v", r)
			}
		}
		if n := e.evalshaCalls(t) - before; n > 2 {
			t.Fatalf("%d scripts ran in Redis for 200 warm validations; want them answered in process", n)
		}

		// A revocation reaches the near cache through the notices.
		e.Exec(t, src.Revoke, id)
		testenv.WaitFor(t, time.Second, "the revoked session refused through the near cache", func() bool { return !validate(token).Valid })

		// Revoked through this process's admin API: its very next
		// validation refuses, without waiting for the notice.
		admin := validation.NewAdmin(e.Store, e.Cache, validation.AdminOptions{Forget: svc.Forget})
		for range 5 {
			token3, id3 := e.NewSession(t)
			e.Warm(t, token3)
			warmNear(token3)
			if err := admin.Revoke(ctx, id3); err != nil {
				t.Fatal(err)
			}
			if r := validate(token3); r.Valid {
				t.Fatalf("valid from %s right after the admin API revoked it", r.Source)
			}
		}

		// The notice channel broken: emptied, then back once subscribed.
		token2, id2 := e.NewSession(t)
		e.Warm(t, token2)
		warmNear(token2)
		if err := e.RDB.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 5*time.Second, "the near cache emptied when its subscription broke", func() bool {
			return testenv.Counter(t, reg, "sessionguard_near_cache_resets_total", "disconnected") >= 1
		})
		warmNear(token2)

		// The invalidator stopped: the near cache stops serving once the
		// watermark it last received is older than MAX_STALENESS, and a
		// revocation made meanwhile is refused by Postgres.
		stopConsumer()
		e.Exec(t, src.Revoke, id2)
		deadline := time.Now().Add(testenv.WorldStaleness + 500*time.Millisecond)
		testenv.WaitFor(t, testenv.WorldStaleness+time.Second, "the revocation refused with the invalidator stopped", func() bool {
			return !validate(token2).Valid
		})
		if time.Now().After(deadline) {
			t.Fatalf("refused only after %v past MAX_STALENESS", time.Since(deadline))
		}
	})
}
