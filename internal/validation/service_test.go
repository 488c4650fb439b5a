package validation_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one isolated world: its own database and redis-server.
// env is a testenv.World whose validation services a test builds itself,
// all counting into reg.
type env struct {
	*testenv.World
	reg *prometheus.Registry
	// identity is the database's pg.IdentitySQL, which the World's
	// IdentityWatch knows.
	identity string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	w := testenv.NewWorld(t, "")
	return &env{World: w, reg: prometheus.NewRegistry(), identity: w.Identity.Current()}
}

func (e *env) service(o validation.Options) *validation.Service {
	if o.Cache == nil {
		o.Cache = e.Cache
	}
	if o.Identity == nil {
		o.Identity = e.Identity
	}
	o.Metrics = validation.NewMetrics(e.reg)
	return validation.New(e.Store, o)
}

// newSession inserts a session expiring in expiresIn with plain SQL.
func (e *env) newSession(t testing.TB, expiresIn time.Duration) (token, id string) {
	t.Helper()
	return testenv.InsertSession(t, e.Pool, "", expiresIn)
}

func validate(t testing.TB, s *validation.Service, token string) validation.Result {
	t.Helper()
	r, err := s.Validate(context.Background(), token)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	return r
}

func expect(t testing.TB, r validation.Result, valid bool, src validation.Source) {
	t.Helper()
	if r.Valid != valid || r.Source != src {
		t.Fatalf("got valid=%v source=%s, want valid=%v source=%s", r.Valid, r.Source, valid, src)
	}
}

func TestMissThenHit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true})
	token, id := e.newSession(t, time.Hour)

	r := validate(t, s, token)
	expect(t, r, true, validation.SourceDatabase)
	if r.Session == nil || r.Session.ID != id {
		t.Fatalf("session %+v, want id %s", r.Session, id)
	}
	r = validate(t, s, token)
	expect(t, r, true, validation.SourceCache)
	if r.Session.ID != id {
		t.Fatalf("cached session id %s, want %s", r.Session.ID, id)
	}
	if st := s.Stats(); st.Hits != 1 || st.Misses != 1 {
		t.Fatalf("stats %+v, want 1 hit 1 miss", st)
	}
	if got := testenv.Counter(t, e.reg, "sessionguard_cache_hits_total", ""); got != 1 {
		t.Fatalf("hits metric %v, want 1", got)
	}
}

func TestInvalidTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true})
	revoked, revokedID := e.newSession(t, time.Hour)
	e.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, revokedID)
	expired, _ := e.newSession(t, -time.Minute)
	cases := map[string]string{"revoked": revoked, "expired": expired, "unknown": "no-such-token"}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			expect(t, validate(t, s, token), false, validation.SourceDatabase)
			// The verdict is cached as negative: the next answer comes from Redis.
			expect(t, validate(t, s, token), false, validation.SourceCache)
		})
	}
}

func TestMalformedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true})
	for _, tok := range []string{"", string(make([]byte, session.MaxTokenLen+1))} {
		if _, err := s.Validate(context.Background(), tok); !errors.Is(err, session.ErrMalformedToken) {
			t.Fatalf("len %d: err %v, want ErrMalformedToken", len(tok), err)
		}
	}
}

// TestExpiryWithoutEvents: nothing invalidates the entry, yet the session
// stops validating at expires_at and its entry is gone from Redis.
func TestExpiryWithoutEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true})
	token, _ := e.newSession(t, 1500*time.Millisecond)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	expect(t, validate(t, s, token), true, validation.SourceCache)
	gen, _ := e.Cache.Generation(context.Background())
	key := e.Cache.EntryKey(gen, session.HashToken(token))
	if pttl := e.RDB.PTTL(context.Background(), key).Val(); pttl <= 0 || pttl > 1500*time.Millisecond {
		t.Fatalf("entry TTL %v, want within the 1.5s left", pttl)
	}
	time.Sleep(1600 * time.Millisecond)
	if n := e.RDB.Exists(context.Background(), key).Val(); n != 0 {
		t.Fatal("entry outlived its session")
	}
	r := validate(t, s, token)
	if r.Valid {
		t.Fatalf("expired session validated (source %s)", r.Source)
	}
}

// racingStore runs hook after the real Postgres read and before the
// service's fill: the exact interleaving of guarantee 4.
type racingStore struct {
	*pg.Store
	hook  func()
	calls atomic.Int64
}

func (r *racingStore) Lookup(ctx context.Context, k session.Key) (pg.Found, error) {
	r.calls.Add(1)
	f, err := r.Store.Lookup(ctx, k)
	if r.hook != nil {
		r.hook()
		r.hook = nil
	}
	return f, err
}

func TestFillRacingRevocationNeverLands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token, id := e.newSession(t, time.Hour)
	rs := &racingStore{Store: e.Store}
	rs.hook = func() {
		// Between the validator's read and its fill: revoke by SQL and
		// invalidate, as the invalidator does on seeing the commit.
		e.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
		if err := e.Cache.Invalidate(context.Background(), session.HashToken(token)); err != nil {
			t.Error(err)
		}
	}
	m := validation.NewMetrics(e.reg)
	s := validation.New(rs, validation.Options{Cache: e.Cache, CacheEnabled: true, Metrics: m})

	// The read happened before the revocation, so this answer may be "valid".
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	// The fill that raced the revocation must not have landed.
	r := validate(t, s, token)
	if r.Valid {
		t.Fatalf("revoked session accepted from %s after its invalidation: stale fill landed", r.Source)
	}
	if got := testenv.Counter(t, e.reg, "sessionguard_cache_fills_total", "refused"); got != 1 {
		t.Fatalf("refused fills %v, want 1", got)
	}
}

func TestNegativeCacheShieldsPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := &racingStore{Store: e.Store}
	s := validation.New(rs, validation.Options{Cache: e.Cache, CacheEnabled: true})
	for i := 0; i < 20; i++ {
		if validate(t, s, "flood-token").Valid {
			t.Fatal("unknown token validated")
		}
	}
	if n := rs.calls.Load(); n != 1 {
		t.Fatalf("postgres read %d times for one unknown token, want 1", n)
	}
	// An insert with that hash drops the negative entry (the invalidator's
	// INSERT effect), after which the session validates.
	e.Exec(t, `INSERT INTO sessions (user_id, token_hash, expires_at)
	           VALUES (gen_random_uuid(), sha256(convert_to('flood-token','UTF8')), now() + interval '1 hour')`)
	if err := e.Cache.Invalidate(context.Background(), session.HashToken("flood-token")); err != nil {
		t.Fatal(err)
	}
	expect(t, validate(t, s, "flood-token"), true, validation.SourceDatabase)
}

func TestRollbackSwitchSendsEverythingToPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: false})
	token, _ := e.newSession(t, time.Hour)
	for i := 0; i < 3; i++ {
		expect(t, validate(t, s, token), true, validation.SourceDatabase)
	}
	expect(t, validate(t, s, "unknown"), false, validation.SourceDatabase)
	if keys := e.RDB.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Fatalf("cache disabled, yet redis holds %v", keys)
	}
}

func TestDatabaseOnlyMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := validation.New(e.Store, validation.Options{CacheEnabled: true}) // no cache
	token, _ := e.newSession(t, time.Hour)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
}

// setWatermark writes a watermark at age before Redis's clock (negative:
// ahead of it) vouching for source, as the invalidator would.
func setWatermark(t testing.TB, c *cache.Cache, age time.Duration, source string) {
	t.Helper()
	ctx := context.Background()
	now, err := c.Time(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetWatermark(ctx, cache.Watermark{At: now.Add(-age), Source: source}); err != nil {
		t.Fatal(err)
	}
}

// rawWatermark stores a watermark as it is, without SetWatermark's namespace
// reset: the state a Redis restored from another deployment's snapshot (or a
// writer with Redis access) could leave.
func rawWatermark(t testing.TB, e *env, c *cache.Cache, source string) {
	t.Helper()
	ctx := context.Background()
	now, err := c.Time(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RDB.Set(ctx, c.Prefix()+":wm", cache.FormatWatermark(cache.Watermark{At: now, Source: source}), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func bypasses(t testing.TB, e *env, reason string) float64 {
	t.Helper()
	return testenv.Counter(t, e.reg, "sessionguard_cache_stale_bypass_total", reason)
}

func TestStalenessGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Second})
	token, _ := e.newSession(t, time.Hour)
	if _, ok := s.WatermarkAge(); ok {
		t.Fatal("watermark age known before any watermark")
	}
	setWatermark(t, e.Cache, 0, e.identity)                           // fills need a watermark of ours
	expect(t, validate(t, s, token), true, validation.SourceDatabase) // miss, fills

	// No watermark at all: no invalidator has proven progress.
	if err := e.RDB.Del(context.Background(), e.Cache.Prefix()+":wm").Err(); err != nil {
		t.Fatal(err)
	}
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	// Fresh watermark for our database: the cache may answer.
	setWatermark(t, e.Cache, 0, e.identity)
	expect(t, validate(t, s, token), true, validation.SourceCache)
	// The invalidator fell behind: Postgres decides again.
	setWatermark(t, e.Cache, 5*time.Second, e.identity)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	if st := s.Stats(); st.StaleBypasses != 2 {
		t.Fatalf("stale bypasses %d, want 2", st.StaleBypasses)
	}
	if bypasses(t, e, "no_watermark") != 1 || bypasses(t, e, "stale") != 1 {
		t.Fatalf("bypass reasons: no_watermark %v stale %v, want 1 and 1",
			bypasses(t, e, "no_watermark"), bypasses(t, e, "stale"))
	}
	if age, ok := s.WatermarkAge(); !ok || age < 5*time.Second || age > 6*time.Second {
		t.Fatalf("watermark age %v %v, want 5s on Redis's clock", age, ok)
	}
}

// TestWatermarkOfAnotherSource: a watermark that vouches for another
// database (another deployment sharing Redis and prefix, an invalidator
// pointed elsewhere) covers nothing: a session revoked behind the cache's
// back is refused from Postgres. The same entry under a watermark of our
// own database is served from the cache, which is what the check prevents.
func TestWatermarkOfAnotherSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	own := cache.New(e.RDB, cache.Options{Prefix: "own"})
	foreign := e.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Minute})
	trusted := validation.New(e.Store, validation.Options{Cache: own, CacheEnabled: true, MaxStaleness: time.Minute, Identity: e.Identity})
	token, id := e.newSession(t, time.Hour)
	setWatermark(t, e.Cache, 0, e.identity)
	setWatermark(t, own, 0, e.identity)
	expect(t, validate(t, foreign, token), true, validation.SourceDatabase) // fills prefix sg
	expect(t, validate(t, trusted, token), true, validation.SourceDatabase) // fills prefix own
	other := "7000000000000000001/16384/16385"
	if other == e.identity {
		t.Fatal("test identity collides")
	}
	rawWatermark(t, e, e.Cache, other)

	e.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id) // no invalidator sees it
	expect(t, validate(t, foreign, token), false, validation.SourceDatabase)
	expect(t, validate(t, trusted, token), true, validation.SourceCache)
	if got := bypasses(t, e, "source_mismatch"); got != 1 {
		t.Fatalf("source_mismatch bypasses %v, want 1", got)
	}
	// A watermark that names no source (an older invalidator) is no better.
	rawWatermark(t, e, own, "")
	expect(t, validate(t, trusted, token), false, validation.SourceDatabase)
}

// TestNoFillUnderAnotherSource: a validator fills only under a watermark of
// its own database, so a second deployment sharing the prefix cannot put
// entries its invalidator never checked where the first one's validators
// would serve them.
func TestNoFillUnderAnotherSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Minute})
	token, _ := e.newSession(t, time.Hour)
	setWatermark(t, e.Cache, 0, "7000000000000000001/16384/16385")
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	if l, err := e.Cache.Lookup(context.Background(), session.HashToken(token)); err != nil || l.Entry != nil {
		t.Fatalf("filled under another deployment's watermark: %+v %v", l.Entry, err)
	}
	if got := testenv.Counter(t, e.reg, "sessionguard_cache_fills_total", "not_ours"); got != 1 {
		t.Fatalf("not_ours fills %v, want 1", got)
	}
}

// TestWatermarkInFuture: a watermark ahead of Redis's clock (forged, or a
// clock that went back) is never trusted, however fresh it would look.
func TestWatermarkInFuture(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Minute})
	token, id := e.newSession(t, time.Hour)
	setWatermark(t, e.Cache, 0, e.identity)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	setWatermark(t, e.Cache, -time.Hour, e.identity)
	e.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
	expect(t, validate(t, s, token), false, validation.SourceDatabase)
	if got := bypasses(t, e, "future"); got != 1 {
		t.Fatalf("future bypasses %v, want 1", got)
	}
	if age, ok := s.WatermarkAge(); !ok || age > -59*time.Minute {
		t.Fatalf("watermark age %v %v, want about -1h", age, ok)
	}
}

// TestStalenessOnRedisClock: staleness is measured on Redis's clock only, so
// a validator whose own clock is hours off trusts a watermark that is fresh
// on Redis's clock, and distrusts one that is stale there.
func TestStalenessOnRedisClock(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{3 * time.Hour, -3 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			s := e.service(validation.Options{CacheEnabled: true, MaxStaleness: 2 * time.Second,
				Now: func() time.Time { return time.Now().Add(skew) }})
			token, _ := e.newSession(t, 24*time.Hour)
			setWatermark(t, e.Cache, 0, e.identity)
			expect(t, validate(t, s, token), true, validation.SourceDatabase)
			expect(t, validate(t, s, token), true, validation.SourceCache)
			setWatermark(t, e.Cache, 5*time.Second, e.identity)
			expect(t, validate(t, s, token), true, validation.SourceDatabase)
			if got := bypasses(t, e, "stale"); got != 1 {
				t.Fatalf("stale bypasses %v, want 1", got)
			}
		})
	}
}

// TestUnknownOwnIdentity: a validator that does not know which database it
// reads trusts no watermark.
func TestUnknownOwnIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	unknown := validation.NewIdentityWatch(e.Store, nil, 0) // never refreshed
	s := e.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Minute, Identity: unknown})
	token, _ := e.newSession(t, time.Hour)
	setWatermark(t, e.Cache, 0, e.identity)
	filler := validation.New(e.Store, validation.Options{Cache: e.Cache, CacheEnabled: true, MaxStaleness: time.Minute, Identity: e.Identity})
	expect(t, validate(t, filler, token), true, validation.SourceDatabase) // fills
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	if got := bypasses(t, e, "unknown_identity"); got != 1 {
		t.Fatalf("unknown_identity bypasses %v, want 1", got)
	}
	if err := unknown.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(t, validate(t, s, token), true, validation.SourceCache)
}

// TestIdentityWatchSeesRecreatedTable: the sessions table re-created (a new
// oid) changes the identity; the running watch picks it up, and watermarks
// of the old table stop covering cache hits.
func TestIdentityWatchSeesRecreatedTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := validation.NewIdentityWatch(e.Store, nil, 0)
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, 50*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	s := e.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Minute, Identity: w})
	token, _ := e.newSession(t, time.Hour)
	setWatermark(t, e.Cache, 0, e.identity)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	expect(t, validate(t, s, token), true, validation.SourceCache)

	e.Exec(t, `ALTER TABLE sessions RENAME TO sessions_old`)
	testenv.WaitFor(t, 5*time.Second, "identity forgotten without a sessions table", func() bool { return w.Current() == "" })
	e.Exec(t, `CREATE TABLE sessions (LIKE sessions_old INCLUDING ALL)`)
	e.Exec(t, `INSERT INTO sessions SELECT * FROM sessions_old`)
	testenv.WaitFor(t, 5*time.Second, "new identity", func() bool { return w.Current() != "" })
	if w.Current() == e.identity {
		t.Fatalf("identity %q unchanged after the table was re-created", w.Current())
	}
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	if got := bypasses(t, e, "source_mismatch"); got != 1 {
		t.Fatalf("source_mismatch bypasses %v, want 1", got)
	}
}

// TestRedisKilledMidRun: validations keep answering from Postgres, the
// breaker opens, and after Redis returns it closes and hits resume.
func TestRedisKilledMidRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(validation.Options{
		CacheEnabled: true,
		RedisTimeout: 300 * time.Millisecond,
		Breaker:      validation.BreakerOptions{MinRequests: 5, OpenTimeout: 300 * time.Millisecond, HalfOpenMax: 1},
	})
	token, _ := e.newSession(t, time.Hour)
	revoked, revokedID := e.newSession(t, time.Hour)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	expect(t, validate(t, s, token), true, validation.SourceCache)

	if err := e.Redis.Stop(); err != nil {
		t.Fatal(err)
	}
	e.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, revokedID)
	for i := 0; i < 10; i++ {
		expect(t, validate(t, s, token), true, validation.SourceDatabase)
		expect(t, validate(t, s, revoked), false, validation.SourceDatabase)
	}
	if st := s.BreakerState(); st != validation.BreakerOpen {
		t.Fatalf("breaker %s with redis down, want open", st)
	}
	if s.Stats().Errors == 0 {
		t.Fatal("no cache errors counted while redis was down")
	}
	if err := e.Redis.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := validate(t, s, token)
		if !r.Valid {
			t.Fatal("valid session refused during recovery")
		}
		if r.Source == validation.SourceCache && s.BreakerState() == validation.BreakerClosed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache not serving 10s after redis came back (breaker %s)", s.BreakerState())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPostgresDownIsUnavailable(t *testing.T) {
	t.Parallel()
	srv, url := testenv.NewPostgres(t)
	ctx := context.Background()
	pool, err := pg.NewPool(ctx, url, pg.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := validation.New(pg.NewStore(pool, testenv.OwnTable()), validation.Options{CacheEnabled: false})
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.Validate(cctx, "any-token"); !errors.Is(err, validation.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

func TestAdminRevokeDropsEntryBeforeAnswering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(validation.Options{CacheEnabled: true})
	a := validation.NewAdmin(e.Store, e.Cache, validation.AdminOptions{})
	userID := "3b241101-e2bb-4255-8caf-4136c566a962"

	token, sess, err := a.Create(ctx, userID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if sess.UserID != userID || len(token) != 43 {
		t.Fatalf("created %+v with token of %d chars", sess, len(token))
	}
	validate(t, s, token)
	expect(t, validate(t, s, token), true, validation.SourceCache)
	if err := a.Revoke(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	// No invalidator runs here: the admin call itself dropped the entry.
	expect(t, validate(t, s, token), false, validation.SourceDatabase)
	if err := a.Revoke(ctx, sess.ID); err != nil {
		t.Fatalf("revoking twice: %v, want nil (idempotent)", err)
	}
	if err := a.Revoke(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, validation.ErrNotFound) {
		t.Fatalf("revoke unknown: %v, want ErrNotFound", err)
	}

	var tokens []string
	for i := 0; i < 3; i++ {
		tok, _, err := a.Create(ctx, userID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, s, tok)
		expect(t, validate(t, s, tok), true, validation.SourceCache)
		tokens = append(tokens, tok)
	}
	n, err := a.RevokeUser(ctx, userID)
	if err != nil || n != 3 {
		t.Fatalf("revoke user: %d, %v; want 3, nil", n, err)
	}
	for _, tok := range tokens {
		if validate(t, s, tok).Valid {
			t.Fatal("user's session still valid after revoking all")
		}
	}
}

func TestAdminRevokeWithRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := validation.NewAdmin(e.Store, e.Cache, validation.AdminOptions{RedisTimeout: 300 * time.Millisecond})
	_, id := e.newSession(t, time.Hour)
	if err := e.Redis.Stop(); err != nil {
		t.Fatal(err)
	}
	err := a.Revoke(ctx, id)
	if !errors.Is(err, validation.ErrCacheInvalidation) {
		t.Fatalf("err %v, want ErrCacheInvalidation", err)
	}
	var revoked bool
	if err := e.Pool.QueryRow(ctx, `SELECT revoked_at IS NOT NULL FROM sessions WHERE id = $1`, id).Scan(&revoked); err != nil || !revoked {
		t.Fatalf("revocation not committed: %v %v", revoked, err)
	}
}

// TestAdminRevokeUserRetryDropsEntries: when the cache drop of a user-wide
// revocation fails (Redis stalls, its data intact), retrying the request
// revokes nothing more but drops the entries the failed attempt left.
func TestAdminRevokeUserRetryDropsEntries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(validation.Options{CacheEnabled: true, RedisTimeout: 200 * time.Millisecond})
	a := validation.NewAdmin(e.Store, e.Cache, validation.AdminOptions{RedisTimeout: 200 * time.Millisecond})
	userID := "5d0c6a3e-8e0f-4f7e-9d43-2b1f9e7c1a10"
	token, _, err := a.Create(ctx, userID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	validate(t, s, token)
	expect(t, validate(t, s, token), true, validation.SourceCache)

	// Writes (and scripts) stall for a while; reads and data stay.
	if err := e.RDB.Do(ctx, "CLIENT", "PAUSE", 1000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	n, err := a.RevokeUser(ctx, userID)
	if !errors.Is(err, validation.ErrCacheInvalidation) || n != 1 {
		t.Fatalf("revoke during pause: %d, %v; want 1, ErrCacheInvalidation", n, err)
	}
	time.Sleep(1100 * time.Millisecond)
	if l, err := e.Cache.Lookup(ctx, session.HashToken(token)); err != nil || l.Entry == nil || l.Entry.Negative {
		t.Fatalf("setup: the failed drop should have left the valid entry (entry %+v, err %v)", l.Entry, err)
	}
	n, err = a.RevokeUser(ctx, userID)
	if err != nil || n != 0 {
		t.Fatalf("retry: %d, %v; want 0, nil", n, err)
	}
	if l, _ := e.Cache.Lookup(ctx, session.HashToken(token)); l.Entry != nil {
		t.Fatalf("retry left the entry: %+v", l.Entry)
	}
	if validate(t, s, token).Valid {
		t.Fatal("revoked session still valid after the retry")
	}
}

// TestHungRedisImpatientClientsTripBreaker: Redis hangs (CLIENT PAUSE) and
// every client gives up after ~100ms, well before the 300ms Redis timeout.
// The breaker must still see Redis's real outcome (timeouts) and open;
// excusing the failures as "the caller went away" would keep it closed for
// as long as the clients stay impatient.
func TestHungRedisImpatientClientsTripBreaker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(validation.Options{
		CacheEnabled: true,
		RedisTimeout: 300 * time.Millisecond,
		Breaker:      validation.BreakerOptions{MinRequests: 3, OpenTimeout: time.Minute},
	})
	token, _ := e.newSession(t, time.Hour)
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	if err := e.RDB.Do(context.Background(), "CLIENT", "PAUSE", 5000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5 && s.BreakerState() != validation.BreakerOpen; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(100*time.Millisecond, cancel)
		_, err := s.Validate(ctx, token)
		timer.Stop()
		cancel()
		if err == nil {
			t.Fatal("a validation cancelled while Redis hung got an answer; the test did not exercise the cancelled path")
		}
	}
	if st := s.BreakerState(); st != validation.BreakerOpen {
		t.Fatalf("breaker %s after 5 Redis timeouts behind cancelled requests, want open", st)
	}
	// With the breaker open, a patient client is answered by Postgres at once.
	start := time.Now()
	expect(t, validate(t, s, token), true, validation.SourceDatabase)
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("validation took %v with the breaker open", d)
	}
}

// lockSessions holds an ACCESS EXCLUSIVE lock on the sessions table in an
// open transaction until the test ends: every query on the table hangs.
func (e *env) lockSessions(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
}

// TestHungPostgresIsUnavailableWithinDBTimeout: a Postgres that accepts the
// query and never answers makes validations and admin calls fail after
// DBTimeout, instead of hanging as long as the client waits.
func TestHungPostgresIsUnavailableWithinDBTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const dbTimeout = 300 * time.Millisecond
	s := e.service(validation.Options{CacheEnabled: false, DBTimeout: dbTimeout})
	a := validation.NewAdmin(e.Store, e.Cache, validation.AdminOptions{DBTimeout: dbTimeout})
	token, id := e.newSession(t, time.Hour)
	e.lockSessions(t)

	within := func(what string, f func() error, want func(error) bool) {
		t.Helper()
		start := time.Now()
		err := f()
		d := time.Since(start)
		if !want(err) {
			t.Fatalf("%s: err %v", what, err)
		}
		if d < dbTimeout-50*time.Millisecond || d > dbTimeout+700*time.Millisecond {
			t.Fatalf("%s answered after %v, want about %v", what, d, dbTimeout)
		}
	}
	// The client itself would wait a minute.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	within("validate", func() error { _, err := s.Validate(ctx, token); return err },
		func(err error) bool { return errors.Is(err, validation.ErrUnavailable) })
	notNil := func(err error) bool { return err != nil && !errors.Is(err, validation.ErrNotFound) }
	within("revoke", func() error { return a.Revoke(ctx, id) }, notNil)
	within("revoke user", func() error { _, err := a.RevokeUser(ctx, "3b241101-e2bb-4255-8caf-4136c566a962"); return err }, notNil)
	within("create", func() error {
		_, _, err := a.Create(ctx, "3b241101-e2bb-4255-8caf-4136c566a962", time.Hour)
		return err
	}, notNil)
}

// TestValidatorOnStandbyNeverTrustsTheCache: a validator whose DATABASE_URL
// reaches a hot standby, which lags the primary the invalidator follows, has
// an identity of its own: it neither trusts nor fills the cache under the
// primary's watermark, so its answers are the standby's, never older ones.
func TestValidatorOnStandbyNeverTrustsTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary, url := testenv.NewPostgres(t)
	_, standbyURL := testenv.NewStandby(t, primary, "app")
	ppool, spool := testenv.Pool(t, url), testenv.Pool(t, standbyURL)
	primaryID, err := pg.Identity(ctx, ppool, "sessions", "")
	if err != nil {
		t.Fatal(err)
	}
	store := pg.NewStore(spool, testenv.OwnTable())
	watch := validation.NewIdentityWatch(store, nil, 0)
	if err := watch.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := watch.Current(); got != primaryID+pg.StandbySuffix || !validation.IsStandbyIdentity(got) {
		t.Fatalf("standby identity %q, primary %q", got, primaryID)
	}
	c := cache.New(testenv.RedisClient(t, testenv.NewRedis(t)), cache.Options{})
	s := validation.New(store, validation.Options{Cache: c, CacheEnabled: true, MaxStaleness: time.Minute, Identity: watch})
	token, _ := testenv.InsertSession(t, ppool, "", time.Hour)
	testenv.WaitFor(t, 10*time.Second, "the session replicated to the standby", func() bool {
		f, err := store.Lookup(ctx, session.Key{Hash: session.HashToken(token)})
		return err == nil && f.Session != nil
	})
	setWatermark(t, c, 0, primaryID)
	for i := 0; i < 2; i++ {
		expect(t, validate(t, s, token), true, validation.SourceDatabase)
	}
	if l, err := c.Lookup(ctx, session.HashToken(token)); err != nil || l.Entry != nil {
		t.Fatalf("a validator on a standby filled the cache: %+v %v", l.Entry, err)
	}
	// Its identity read on the primary, its lookups landing on the standby
	// (a multi-host DATABASE_URL, a demoted primary behind one address):
	// each answer read in recovery is still never cached.
	mixed := validation.New(store, validation.Options{Cache: c, CacheEnabled: true, MaxStaleness: time.Minute,
		Identity: fixedIdentity(primaryID)})
	for i := 0; i < 2; i++ {
		expect(t, validate(t, mixed, token), true, validation.SourceDatabase)
	}
	if l, err := c.Lookup(ctx, session.HashToken(token)); err != nil || l.Entry != nil {
		t.Fatalf("an answer read on a standby was cached: %+v %v", l.Entry, err)
	}
}

// fixedIdentity is a validator identity that never changes.
type fixedIdentity string

func (f fixedIdentity) Current() string { return string(f) }
