package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var slotSeq atomic.Int64

// env is a testenv.World with a replication slot of its own.
type env struct {
	*testenv.World
	src               *testenv.Source
	slot, publication string
}

func newEnv(t testing.TB, dbURL string) *env {
	t.Helper()
	return newEnvOn(t, testenv.NewWorld(t, dbURL), testenv.DefaultPublication)
}

// newSourceEnv is an env of src on database dbURL (a fresh one of the
// shared server when empty).
func newSourceEnv(t testing.TB, src *testenv.Source, dbURL string) *env {
	t.Helper()
	return newEnvOn(t, src.NewWorld(t, dbURL), src.Publication)
}

// newEnvOn gives world a slot; the consumer streams from publication.
func newEnvOn(t testing.TB, world *testenv.World, publication string) *env {
	t.Helper()
	return newEnvWith(t, world, testenv.SourceOf(t, world.Table), publication)
}

// newEnvWith is newEnvOn with the world's testenv.Source given (nil for a
// world that is none of them).
func newEnvWith(t testing.TB, world *testenv.World, src *testenv.Source, publication string) *env {
	t.Helper()
	e := &env{World: world, src: src, publication: publication,
		slot: fmt.Sprintf("sg_test_%d_%d", time.Now().UnixNano()%1e6, slotSeq.Add(1))}
	// Slots are cluster-wide and the package's tests share one cluster:
	// free this one once its consumers (cleaned up before this) are gone.
	t.Cleanup(func() {
		_, _ = e.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name)
			FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, e.slot)
	})
	return e
}

// eachSource runs test as a parallel subtest per sessions table: every
// guarantee of the default source holds for the others too.
func eachSource(t *testing.T, test func(t *testing.T, src *testenv.Source)) {
	t.Helper()
	eachSourceOf(t, testenv.Sources(), test)
}

// withByID is testenv.Sources and a source whose DELETE names only the id,
// for the visibility guarantees, which ops by id must keep too.
var withByID = append(testenv.Sources(), testenv.ByIDSources()...)

// eachSourceOf is eachSource over srcs.
func eachSourceOf(t *testing.T, srcs []*testenv.Source, test func(t *testing.T, src *testenv.Source)) {
	t.Helper()
	for _, src := range srcs {
		t.Run(src.Name, func(t *testing.T) {
			t.Parallel()
			test(t, src)
		})
	}
}

// NewSession inserts a session into the env's table as its writers do
// (World.NewSession only knows sessionguard's own table).
func (e *env) NewSession(t testing.TB) (token, id string) {
	t.Helper()
	return e.src.NewSession(t, e.World)
}

// revokeAt revokes session id and returns the WAL insert position reached
// inside the revoking transaction, before its commit.
func (e *env) revokeAt(t testing.TB, id string) (lsn string) {
	t.Helper()
	if err := e.Pool.QueryRow(context.Background(),
		e.src.Revoke+` RETURNING pg_current_wal_insert_lsn()::text`, id).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// consumer runs a Consumer until the test ends (or stop is called).
func (e *env) consumer(t testing.TB, reg prometheus.Registerer, opts ...func(*cdc.Options)) (c *cdc.Consumer, stop func()) {
	t.Helper()
	var m *cdc.Metrics
	if reg != nil {
		m = cdc.NewMetrics(reg)
	}
	o := cdc.Options{
		DatabaseURL: e.URL, Slot: e.slot, Publication: e.publication, Table: e.Table,
		HeartbeatInterval: 100 * time.Millisecond, StandbyPoll: 200 * time.Millisecond,
		StatusInterval: 300 * time.Millisecond, MaxBackoff: time.Second,
		Logger: zaptest.NewLogger(t), Metrics: m,
	}
	for _, f := range opts {
		f(&o)
	}
	c = cdc.New(e.Cache, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once atomic.Bool
	stop = func() {
		if once.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer.Run: %v", err)
		}
	}
	t.Cleanup(stop)
	testenv.WaitFor(t, 60*time.Second, "consumer streaming with a fresh watermark", func() bool {
		s := c.Status()
		return s.Streaming && !s.Watermark.IsZero() && time.Since(s.Watermark) < time.Second
	})
	return c, stop
}

// fill caches token's row as a validator's fill would (while no
// invalidator runs, say), and checks that it is there.
func (e *env) fill(t testing.TB, token string) {
	t.Helper()
	ctx := context.Background()
	cred, err := e.Creds.Credential(token)
	if err != nil {
		t.Fatal(err)
	}
	found, err := e.Store.Lookup(ctx, cred.Key)
	if err != nil || found.Session == nil {
		t.Fatalf("the session's row: %+v %v", found, err)
	}
	var l cache.Lookup
	testenv.WaitFor(t, 5*time.Second, "a fill lease", func() bool {
		l, err = e.Cache.Lookup(ctx, cred.Key.Hash)
		return err == nil && l.Lease != ""
	})
	if ok, err := e.Cache.Fill(ctx, l, found.Session); !ok || err != nil {
		t.Fatalf("fill: %v %v", ok, err)
	}
	if en := e.Entry(t, token); en == nil || en.Negative {
		t.Fatalf("the session should be cached, got %+v", en)
	}
}

// revocationPropagates checks the stream end to end: a fresh session, served
// from the cache, revoked by SQL, is refused within the given time.
func (e *env) revocationPropagates(t testing.TB, within time.Duration) {
	t.Helper()
	token, id := e.NewSession(t)
	e.Warm(t, token)
	e.Exec(t, e.src.Revoke, id)
	e.Refused(t, token, within)
}

func TestChangesReachTheCache(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		e := newSourceEnv(t, src, "")
		reg := prometheus.NewRegistry()
		c, _ := e.consumer(t, reg)
		// Generous for a loaded CI machine: latency is measured by the benchmarks.
		const within = 5 * time.Second

		cases := []struct {
			name   string
			change func(t *testing.T, token, id string)
		}{
			{"revoke", func(t *testing.T, _, id string) { e.Exec(t, src.Revoke, id) }},
			{"expire", func(t *testing.T, _, id string) { e.Exec(t, src.Expire, id) }},
			{"delete", func(t *testing.T, _, id string) { e.Exec(t, src.Delete, id) }},
			{"token change", func(t *testing.T, _, id string) {
				newToken, update := src.Rekey(t, e.World, id)
				// The new token was looked up before it existed: negative entry.
				if e.Validate(t, newToken).Valid {
					t.Fatal("unknown token valid")
				}
				update(t)
				testenv.WaitFor(t, within, "new token valid", func() bool { return e.Validate(t, newToken).Valid })
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				token, id := e.NewSession(t)
				e.Warm(t, token)
				start := time.Now()
				tc.change(t, token, id)
				e.Refused(t, token, within)
				t.Logf("refused %v after commit", time.Since(start))
			})
		}

		t.Run("other update is applied in place", func(t *testing.T) {
			token, id := e.NewSession(t)
			e.Warm(t, token)
			var want time.Time
			if err := e.Pool.QueryRow(context.Background(), src.Extend, id).Scan(&want); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, within, "entry updated in place", func() bool {
				en := e.Entry(t, token)
				if en != nil && !en.Session.ExpiresAt.Equal(want) {
					t.Logf("entry %+v want %v", en.Session, want)
				}
				return en != nil && !en.Negative && en.Session.ExpiresAt.Equal(want)
			})
			if r := e.Validate(t, token); !r.Valid || r.Source != validation.SourceCache {
				t.Fatalf("after in-place update: %+v", r)
			}
		})

		t.Run("insert after a negative entry", func(t *testing.T) {
			token, insert := src.Unborn(t, e.World)
			if e.Validate(t, token).Valid {
				t.Fatal("unknown token valid")
			}
			if en := e.Entry(t, token); en == nil || !en.Negative {
				t.Fatalf("want a negative entry, got %+v", en)
			}
			insert(t)
			testenv.WaitFor(t, within, "inserted token valid", func() bool { return e.Validate(t, token).Valid })
		})

		t.Run("truncate", func(t *testing.T) {
			token, _ := e.NewSession(t)
			e.Warm(t, token)
			gen, _ := e.Cache.Generation(context.Background())
			e.Exec(t, src.Truncate)
			e.Refused(t, token, within)
			if g, _ := e.Cache.Generation(context.Background()); g == gen {
				t.Fatalf("generation still %s after truncate", g)
			}
			testenv.WaitFor(t, within, "truncate counted", func() bool { return c.Status().Truncates == 1 })
		})

		// Updates: expire, token change, in place; and revoke where it is one.
		s := c.Status()
		if s.Role != cdc.RoleActive || s.Inserts < 6 || s.Updates < 3 || s.Deletes < 1 {
			t.Fatalf("status counts: %+v", s)
		}
		if n := testenv.Counter(t, reg, "sessionguard_invalidator_events_total", "delete"); n < 1 {
			t.Fatalf("events_total{op=delete} = %v", n)
		}
	})
}

// slotConfirmed reads the slot's confirmed_flush_lsn and the current WAL end.
func (e *env) slotConfirmed(t testing.TB) (confirmed, current string) {
	t.Helper()
	err := e.Pool.QueryRow(context.Background(),
		`SELECT coalesce(confirmed_flush_lsn::text, ''), pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = $1`,
		e.slot).Scan(&confirmed, &current)
	if err != nil {
		t.Fatal(err)
	}
	return confirmed, current
}

func TestRedisDownNothingAckedThenApplied(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		e := newSourceEnv(t, src, "")
		c, _ := e.consumer(t, nil)
		token, id := e.NewSession(t)
		e.Warm(t, token)

		if err := e.Redis.Stop(); err != nil {
			t.Fatal(err)
		}
		revokedAt := e.revokeAt(t, id)
		// Long enough for several status updates and heartbeats.
		time.Sleep(2 * time.Second)
		var behind bool
		if err := e.Pool.QueryRow(context.Background(),
			`SELECT confirmed_flush_lsn < $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`,
			e.slot, revokedAt).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		if !behind {
			t.Fatal("slot acknowledged the revocation while Redis was down")
		}
		if !c.Status().RedisFailing {
			t.Fatal("status does not show Redis failing")
		}

		if err := e.Redis.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "revocation acknowledged after Redis came back", func() bool {
			var done bool
			_ = e.Pool.QueryRow(context.Background(),
				`SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`,
				e.slot, revokedAt).Scan(&done)
			return done
		})
		e.Refused(t, token, 5*time.Second)
		// The cache is trusted again: a fresh session is served from it.
		token2, _ := e.NewSession(t)
		e.Warm(t, token2)
	})
}

func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		p, url := testenv.NewPostgres(t)
		e := newSourceEnv(t, src, url)
		reg := prometheus.NewRegistry()
		c, _ := e.consumer(t, reg)
		token, id := e.NewSession(t)
		e.Warm(t, token)

		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "not streaming while Postgres is down", func() bool { return !c.Status().Streaming })
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 20*time.Second, "streaming again", func() bool { return c.Status().Streaming })
		// The writer's pooled connections died with the server.
		e.Pool.Reset()
		e.Exec(t, src.Revoke, id)
		e.Refused(t, token, 5*time.Second)
		if n := testenv.Counter(t, reg, "sessionguard_invalidator_reconnects_total", ""); n < 1 {
			t.Fatalf("reconnects_total = %v", n)
		}
	})
}

func TestSlotDroppedIsDetectedFlushedRecreated(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		e := newSourceEnv(t, src, "")
		reg := prometheus.NewRegistry()
		c, _ := e.consumer(t, reg)
		token, _ := e.NewSession(t)
		e.Warm(t, token)
		gen, _ := e.Cache.Generation(context.Background())

		// Kill the walsender, then drop the slot before the consumer is back.
		testenv.WaitFor(t, 5*time.Second, "slot dropped", func() bool {
			_, err := e.Pool.Exec(context.Background(), `SELECT pg_terminate_backend(active_pid)
				FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, e.slot)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, e.slot)
			return err == nil
		})
		testenv.WaitFor(t, 15*time.Second, "slot loss counted", func() bool {
			return testenv.Counter(t, reg, "sessionguard_invalidator_slot_lost_total", "") == 1
		})
		// The cache was flushed: nothing cached before the loss is served.
		testenv.WaitFor(t, 5*time.Second, "cache flushed after slot loss", func() bool {
			g, _ := e.Cache.Generation(context.Background())
			return g != gen
		})
		if en := e.Entry(t, token); en != nil {
			t.Fatalf("entry survived slot loss: %+v", en)
		}
		testenv.WaitFor(t, 15*time.Second, "streaming from the recreated slot", func() bool {
			s := c.Status()
			return s.Streaming && time.Since(s.Watermark) < time.Second
		})
		// And the new slot carries changes.
		e.revocationPropagates(t, 2*time.Second)
	})
}

func TestLargeTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	c, _ := e.consumer(t, nil)
	const rows = 100_000
	user := "6f1c1d52-4c57-4a38-9d0e-0d5f1f0b9b11"
	e.Exec(t, `INSERT INTO sessions (user_id, token_hash, expires_at)
		SELECT $1::uuid, sha256(convert_to('large-' || i, 'UTF8')), now() + interval '1 hour'
		FROM generate_series(1, $2::int) i`, user, rows)
	sample := []int{1, 2, 777, 50_000, 99_999, rows}
	for _, i := range sample {
		e.Warm(t, fmt.Sprintf("large-%d", i))
	}
	before := c.Status().Updates
	e.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, user)
	testenv.WaitFor(t, 60*time.Second, "all updates applied", func() bool { return c.Status().Updates-before >= rows })
	for _, i := range sample {
		e.Refused(t, fmt.Sprintf("large-%d", i), time.Second)
	}
}

func TestShutdownAcksWhatWasApplied(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		e := newSourceEnv(t, src, "")
		_, stop := e.consumer(t, nil)
		token, id := e.NewSession(t)
		e.Warm(t, token)
		lsn := e.revokeAt(t, id)
		e.Refused(t, token, 2*time.Second)
		stop()
		// The walsender handles the last status update as it exits.
		testenv.WaitFor(t, 10*time.Second, "applied revocation acknowledged at shutdown", func() bool {
			var done bool
			if err := e.Pool.QueryRow(context.Background(),
				`SELECT confirmed_flush_lsn >= $2::pg_lsn AND NOT active FROM pg_replication_slots WHERE slot_name = $1`,
				e.slot, lsn).Scan(&done); err != nil {
				t.Fatal(err)
			}
			return done
		})
	})
}

// TestRevocationAppliedOnlyOnceVisible reproduces the gap between logical
// decoding seeing a commit and readers seeing it: with a synchronous standby
// that never answers, a revocation's commit is in the WAL (and streamed) but
// invisible until the wait is released, longer than any hold. A validator
// that misses meanwhile refills the entry from the old row; the entry must
// go again once the revocation is visible, and the token stay refused.
func TestRevocationAppliedOnlyOnceVisible(t *testing.T) {
	t.Parallel()
	eachSourceOf(t, withByID, func(t *testing.T, src *testenv.Source) {
		_, url := testenv.NewPostgres(t)
		e := newSourceEnv(t, src, url)
		e.consumer(t, nil)
		token, id := e.NewSession(t)
		e.Warm(t, token)

		done, release := e.revokeInvisible(t, url, src.Revoke, id)
		// Longer than any hold (a revocation's, and an op by id's tombstone
		// of LeaseTTL+FillHold): a drop made now would be refilled below.
		time.Sleep(cache.DefaultLeaseTTL + cache.DefaultFillHold + 500*time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("the revocation did not wait for the synchronous standby: %v", err)
		default:
		}
		// A validator that misses now reads the old, still visible row.
		e.Validate(t, token)
		e.Validate(t, token)

		release()
		e.Refused(t, token, 10*time.Second)
		e.StaysRefused(t, token) // no fill raced the invisible commit
	})
}

// TestEarlyRevocationHoldsFills: a revocation goes to Redis before its
// transaction is known to be visible. Its hold refuses the fill of a
// validator that reads the old row meanwhile; a hold that is lost (evicted,
// or deleted by a later op of the same transaction on the same token) lets
// such a fill land, and the apply after the visibility check must remove
// it before the watermark moves on.
func TestEarlyRevocationHoldsFills(t *testing.T) {
	t.Parallel()
	eachSourceOf(t, withByID, func(t *testing.T, src *testenv.Source) {
		_, url := testenv.NewPostgres(t)
		e := newSourceEnv(t, src, url)
		e.consumer(t, nil)
		token, id := e.NewSession(t)
		e.Warm(t, token)
		ctx := context.Background()
		cred, err := e.Creds.Credential(token)
		if err != nil {
			t.Fatal(err)
		}
		// Read by key: a lookup would take the fill lease.
		read := func(key func(gen string, h session.Hash) string) string {
			gen, _ := e.Cache.Generation(ctx)
			v, _ := e.RDB.Get(ctx, key(gen, cred.Key.Hash)).Result()
			return v
		}

		_, release := e.revokeInvisible(t, url, src.Revoke, id)
		testenv.WaitFor(t, 10*time.Second, "the drop in Redis while the commit is not visible", func() bool {
			return read(e.Cache.EntryKey) == ""
		})
		if got := read(e.Cache.LeaseKey); got != "hold" {
			t.Fatalf("fill lease %q after the early drop, want the hold", got)
		}
		if !e.Validate(t, token).Valid || read(e.Cache.EntryKey) != "" {
			t.Fatal("under the hold: want the old row from Postgres, and no fill")
		}
		// The hold lost: the validator's fill of the old row lands (for a
		// table whose deletes name only the id, the row's tombstone refuses
		// it).
		gen, err := e.Cache.Generation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.RDB.Del(ctx, e.Cache.LeaseKey(gen, cred.Key.Hash)).Err(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if !e.Validate(t, token).Valid {
				t.Fatal("the revocation visible before its commit returned")
			}
		}
		release()
		e.Refused(t, token, 10*time.Second)
		e.StaysRefused(t, token)
	})
}

// revokeInvisible commits sql, a revocation of id, while commits wait for a
// synchronous standby that never answers: the commit is streamed but stays
// invisible to readers. release makes it visible and waits for the commit
// to return; done yields the commit's result (nothing before release).
func (e *env) revokeInvisible(t *testing.T, url, sql, id string) (done <-chan error, release func()) {
	t.Helper()
	ctx := context.Background()
	e.Exec(t, `ALTER SYSTEM SET synchronous_standby_names = 'nobody'`)
	e.Exec(t, `SELECT pg_reload_conf()`)
	e.commitsWait(t)
	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close(ctx) })
	result := make(chan error, 1)
	go func() {
		// Blocks in the commit: waiting for the synchronous standby.
		_, err := writer.Exec(ctx, sql, id)
		result <- err
	}()
	return result, func() {
		t.Helper()
		e.Exec(t, `ALTER SYSTEM RESET synchronous_standby_names`)
		e.Exec(t, `SELECT pg_reload_conf()`)
		if err := <-result; err != nil {
			t.Fatal(err)
		}
	}
}

// commitsWait waits until commits wait for the synchronous standby just
// configured: the checkpointer hands the reloaded setting to committing
// backends some time after pg_reload_conf returns. A probe is a commit that
// writes WAL (a logical message the consumer ignores); the one that waits
// goes on waiting, its connection gone, until the standby acknowledges it
// or the setting is reset.
func (e *env) commitsWait(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "commits to wait for the synchronous standby", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := e.Pool.Exec(ctx, `SELECT pg_logical_emit_message(true, 'sessionguard-test.sync-probe', '')`)
		return errors.Is(err, context.DeadlineExceeded)
	})
}

// TestOwedFlushSurvivesACrash: an invalidator that created the slot and died
// before flushing leaves a flush-pending mark; the next one flushes first,
// although the slot it finds looks healthy.
func TestOwedFlushSurvivesACrash(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		e := newSourceEnv(t, src, "")
		ctx := context.Background()
		_, stop := e.consumer(t, nil)
		stop()
		token, _ := e.NewSession(t)
		// The stale cache of the crash: an entry filled before the slot existed.
		e.fill(t, token)
		if _, err := e.Cache.MarkFlushPending(ctx); err != nil {
			t.Fatal(err)
		}
		e.consumer(t, nil)
		if pending, err := e.Cache.FlushPending(ctx); err != nil || pending != "" {
			t.Fatalf("flush still pending (%q, %v)", pending, err)
		}
		if en := e.Entry(t, token); en != nil {
			t.Fatalf("entry from before the owed flush survived: %+v", en)
		}
	})
}

// TestSlotInvalidatedWhileDown: the invalidator is down while WAL piles up
// past max_slot_wal_keep_size, so Postgres invalidates the slot (wal_status
// 'lost') and a revocation made meanwhile is never delivered. The next
// invalidator must say so, flush the cache, recreate the slot and go on.
func TestSlotInvalidatedWhileDown(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, src *testenv.Source) {
		_, url := testenv.NewPostgres(t)
		e := newSourceEnv(t, src, url)
		ctx := context.Background()
		_, stop := e.consumer(t, nil)
		stop()

		token, id := e.NewSession(t)
		// A validator cached the session while the invalidator was down.
		e.fill(t, token)
		e.Exec(t, `ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
		e.Exec(t, `SELECT pg_reload_conf()`)
		e.Exec(t, src.Revoke, id) // lost with the slot
		testenv.WaitFor(t, 60*time.Second, "slot invalidated", func() bool {
			e.Exec(t, `CREATE TABLE IF NOT EXISTS filler (v text)`)
			e.Exec(t, `INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000)`)
			e.Exec(t, `TRUNCATE filler`)
			e.Exec(t, `SELECT pg_switch_wal()`)
			e.Exec(t, `CHECKPOINT`)
			var status string
			if err := e.Pool.QueryRow(ctx, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&status); err != nil {
				t.Fatal(err)
			}
			return status == "lost"
		})
		e.Exec(t, `ALTER SYSTEM RESET max_slot_wal_keep_size`)
		e.Exec(t, `SELECT pg_reload_conf()`)

		reg := prometheus.NewRegistry()
		e.consumer(t, reg)
		if n := testenv.Counter(t, reg, "sessionguard_invalidator_slot_lost_total", ""); n != 1 {
			t.Fatalf("slot_lost_total = %v, want 1", n)
		}
		if r := e.Validate(t, token); r.Valid {
			t.Fatalf("revoked session valid from %s after the slot was lost", r.Source)
		}
		// The recreated slot carries changes.
		e.revocationPropagates(t, 5*time.Second)
	})
}
