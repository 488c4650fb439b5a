package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// World is one isolated set of servers that a test drives from outside, as
// a writer and a validator would: a migrated database, a redis-server of its
// own, the cache on it, and a validation service that trusts the cache
// under a watermark of its own database (MAX_STALENESS 2s).
type World struct {
	Table    source.Table
	Creds    validation.Credentials
	URL      string
	Pool     *pgxpool.Pool
	Redis    *Redis
	RDB      *redis.Client
	Cache    *cache.Cache
	Store    *pg.Store
	Identity *validation.IdentityWatch
	Service  *validation.Service
}

// WorldStaleness is the MAX_STALENESS of a World's validation service.
const WorldStaleness = 2 * time.Second

// NewWorld builds a World of sessionguard's own table on database url (a
// fresh one of the package's shared server when empty).
func NewWorld(t testing.TB, url string) *World {
	t.Helper()
	table, _ := source.TableOf(source.Sessionguard)
	return newWorld(t, url, table, source.Opaque{}, session.Rule{})
}

func newWorld(t testing.TB, url string, table source.Table, creds validation.Credentials, rule session.Rule) *World {
	t.Helper()
	if url == "" {
		url = DB(t)
	}
	w := &World{Table: table, Creds: creds, URL: url, Pool: Pool(t, url), Redis: NewRedis(t)}
	w.RDB = RedisClient(t, w.Redis)
	// Its tests run validators with and without the staleness guard; a
	// guard-off validator starts the namespace itself (see app.Validator).
	w.Cache = cache.New(w.RDB, cache.Options{StartsNamespace: true})
	w.Store = pg.NewStore(w.Pool, table)
	w.Identity = validation.NewIdentityWatch(w.Store, nil, 0)
	if err := w.Identity.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Service = validation.New(w.Store, validation.Options{Credentials: creds, Rule: rule, Cache: w.Cache, CacheEnabled: true,
		MaxStaleness: WorldStaleness, Identity: w.Identity})
	return w
}

// Exec runs sql as a plain writer would.
func (w *World) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := w.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// NewSession inserts a session valid for an hour with plain SQL.
func (w *World) NewSession(t testing.TB) (token, id string) {
	t.Helper()
	return InsertSession(t, w.Pool, "", time.Hour)
}

// Validate asks the validation service about token.
func (w *World) Validate(t testing.TB, token string) validation.Result {
	t.Helper()
	r, err := w.Service.Validate(context.Background(), token)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	return r
}

// WatermarkFresh waits for a watermark written after this call: everything
// committed before it has then been applied.
func (w *World) WatermarkFresh(t testing.TB, within time.Duration) {
	t.Helper()
	since := time.Now()
	WaitFor(t, within, "a watermark written after now", func() bool {
		wm, err := w.Cache.Watermark(context.Background())
		return err == nil && wm.At.After(since)
	})
}

// Warm makes token's valid entry cached and served from the cache, once a
// watermark past its INSERT (whose drop would void a fill) is in.
func (w *World) Warm(t testing.TB, token string) {
	t.Helper()
	w.WatermarkFresh(t, 30*time.Second)
	WaitFor(t, 20*time.Second, "token served valid from the cache", func() bool {
		r := w.Validate(t, token)
		return r.Valid && r.Source == validation.SourceCache
	})
}

// Entry is what a validator's lookup finds for token (nil: miss).
func (w *World) Entry(t testing.TB, token string) *cache.Entry {
	t.Helper()
	cred, err := w.Creds.Credential(token)
	if err != nil {
		t.Fatalf("read token: %v", err)
	}
	l, err := w.Cache.Lookup(context.Background(), cred.Key.Hash)
	if err != nil {
		t.Fatal(err)
	}
	return l.Entry
}

// Refused waits until the cache holds no valid entry for token and a
// validator refuses it.
func (w *World) Refused(t testing.TB, token string, within time.Duration) {
	t.Helper()
	WaitFor(t, within, "token dropped from the cache and refused", func() bool {
		en := w.Entry(t, token)
		return (en == nil || en.Negative) && !w.Validate(t, token).Valid
	})
}

// RefusedWithin waits until a validator refuses token.
func (w *World) RefusedWithin(t testing.TB, token string, within time.Duration) {
	t.Helper()
	WaitFor(t, within, "the revoked session refused by a validator", func() bool {
		return !w.Validate(t, token).Valid
	})
}

// StaysRefused checks that token is still refused under a watermark written
// after this call: no stale entry came back with it.
func (w *World) StaysRefused(t testing.TB, token string) {
	t.Helper()
	w.WatermarkFresh(t, 10*time.Second)
	if r := w.Validate(t, token); r.Valid {
		t.Fatalf("revoked session served valid from %s under a fresh watermark", r.Source)
	}
}

// OwnTable is sessionguard's own sessions table.
func OwnTable() source.Table {
	t, _ := source.TableOf(source.Sessionguard)
	return t
}
