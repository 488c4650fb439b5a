package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
)

// WaitFor polls cond every 20ms until it holds, failing the test with what
// after d. A generous d costs nothing when cond holds early.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Counter reads one counter series from g: the first series of name that has
// label among its label values (any series when label is empty). It fails
// the test when there is none.
func Counter(t testing.TB, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("counter %s{%s} not found", name, label)
	return 0
}

// InsertSession inserts a session with plain SQL, as any database writer
// would, and returns its fresh token and id. An empty userID gets a random
// one; expiresIn may be negative (an already expired session).
func InsertSession(t testing.TB, db *pgxpool.Pool, userID string, expiresIn time.Duration) (token, id string) {
	t.Helper()
	token, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	var uid *string
	if userID != "" {
		uid = &userID
	}
	err = db.QueryRow(context.Background(),
		`INSERT INTO sessions (user_id, token_hash, expires_at)
		 VALUES (coalesce($3::uuid, gen_random_uuid()), sha256(convert_to($1, 'UTF8')), now() + $2::interval)
		 RETURNING id::text`, token, expiresIn, uid).Scan(&id)
	if err != nil {
		t.Fatalf("insert session: %v", err)
	}
	return token, id
}

// Pool opens the project's pgx pool (pg.NewPool) on url, closed when the test
// ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.NewPool(context.Background(), url, pg.PoolOptions{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// RedisClient returns the project's Redis client (cache.NewClient) for r,
// with a short call timeout so outage tests stay quick; closed when the test
// ends.
func RedisClient(t testing.TB, r *Redis) *redis.Client {
	t.Helper()
	rdb, err := cache.NewClient(r.URL(), cache.ClientOptions{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb.(*redis.Client)
}
