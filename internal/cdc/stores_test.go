package cdc_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// The invalidator following each framework's session store: every way the
// framework ends a session reaches the validators as a revocation of our own
// table does, an expiry needs no event, a touch costs no flush, and no
// credential reaches Redis in clear. One World per store; its cases run in
// turn, the expiring session's clock running alongside them.

// storeExpiresIn is how long the session of the expiry case lives: enough to
// warm it on a loaded machine.
const storeExpiresIn = 3 * time.Second

// storeRevocation is one way a store ends a session; all: every session of
// the user.
type storeRevocation struct {
	name string
	all  bool
	end  func(t testing.TB, w *testenv.World, s testenv.StoreSession)
}

// storeRevocations are the ways each store's own code ends sessions (see
// testenv's stores.go for the SQL each runs).
var storeRevocations = map[string][]storeRevocation{
	source.BetterAuth: {
		{name: "sign-out", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			storeDo(t, testenv.BetterAuthSignOut(context.Background(), w.Pool, s.Token))
		}},
		{name: "revoke sessions", all: true, end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			storeDo(t, testenv.BetterAuthRevokeAll(context.Background(), w.Pool, s.User))
		}},
	},
	source.Kratos: {
		{name: "deactivate", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			n, err := testenv.KratosDeactivate(context.Background(), w.Pool, s.ID)
			storeDo(t, err)
			if n != 1 {
				t.Fatalf("kratos found %d sessions to deactivate, want 1", n)
			}
		}},
		{name: "logout", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			id, err := testenv.KratosLogout(context.Background(), w.Pool, s.Token)
			storeDo(t, err)
			if id != s.ID {
				t.Fatalf("kratos logged out session %q, want %q", id, s.ID)
			}
		}},
		{name: "delete", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			storeDo(t, testenv.KratosDelete(context.Background(), w.Pool, s.ID))
		}},
	},
	source.ConnectPgSimple: {
		{name: "destroy", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			storeDo(t, testenv.ConnectPGSimpleDestroy(context.Background(), w.Pool, s.Token))
		}},
	},
	source.Django: {
		{name: "delete", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			storeDo(t, testenv.DjangoDelete(context.Background(), w.Pool, s.Token))
		}},
	},
	source.Lucia: {
		{name: "invalidate", end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			storeDo(t, testenv.LuciaInvalidate(context.Background(), w.Pool, s.ID))
		}},
		{name: "invalidate all", all: true, end: func(t testing.TB, w *testenv.World, s testenv.StoreSession) {
			user, err := strconv.Atoi(s.User)
			storeDo(t, err)
			storeDo(t, testenv.LuciaInvalidateAll(context.Background(), w.Pool, user))
		}},
	},
}

func storeDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// storeZone is a time zone far east of UTC: read as UTC, a wall clock
// written in it would keep a session alive 9 hours too long.
const storeZone = "Asia/Tokyo"

func TestStores(t *testing.T) {
	t.Parallel()
	type world struct{ name, zone string }
	var worlds []world
	for _, name := range testenv.StoreNames() {
		worlds = append(worlds, world{name: name})
	}
	// connect-pg-simple on a server whose zone is not UTC, read in that zone
	// (SESSION_TIMESTAMP_ZONE).
	worlds = append(worlds, world{name: source.ConnectPgSimple, zone: storeZone})
	for _, w := range worlds {
		sub := w.name
		if w.zone != "" {
			sub += " writing in " + strings.ReplaceAll(w.zone, "/", "-")
		}
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			name := w.name
			st := newStoreTest(t, name, w.zone)
			expiry := st.watchExpiry(t)
			t.Run("miss then hit", st.missThenHit)
			for _, r := range storeRevocations[name] {
				t.Run("revoke/"+r.name, func(t *testing.T) { st.revoke(t, r) })
			}
			for _, r := range storeRevocations[name] {
				t.Run("fill racing/"+r.name, func(t *testing.T) { st.fillRacing(t, r) })
			}
			if name == source.ConnectPgSimple {
				t.Run("touch keeps the entry", st.touch)
			}
			t.Run("no credential in redis", func(t *testing.T) { st.noCredentialInRedis(t) })
			t.Run("expiry without event", expiry.check)
			t.Run("truncate flushes", st.truncate)
		})
	}
}

// storeTest is a store's World with its invalidator running, and every
// credential its cases signed in.
type storeTest struct {
	*env
	name    string
	c       *cdc.Consumer
	reg     *prometheus.Registry // the consumer's metrics
	secrets []string             // what must never reach Redis
}

func newStoreTest(t *testing.T, name, zone string) *storeTest {
	t.Helper()
	w := testenv.NewStoreWorldInZone(t, name, zone)
	e := newEnvWith(t, w, nil, testenv.StorePublication(name))
	st := &storeTest{env: e, name: name, reg: prometheus.NewRegistry()}
	st.c, _ = e.consumer(t, st.reg)
	return st
}

// signIn signs a session of user in as the store does (expires zero: the
// store's own lifetime) and remembers its credentials.
func (st *storeTest) signIn(t testing.TB, user string, expires time.Time) testenv.StoreSession {
	t.Helper()
	s := testenv.StoreSignIn(t, st.World, st.name, user, expires)
	st.secrets = append(st.secrets, s.Token, s.Presented)
	if st.Table.SecretID {
		st.secrets = append(st.secrets, s.ID)
	}
	return s
}

func (st *storeTest) user(t testing.TB) string { return testenv.StoreUser(t, st.World, st.name) }

// cachedValid waits until token is served valid from the cache.
func (st *storeTest) cachedValid(t testing.TB, token string) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "the session served valid from the cache", func() bool {
		r := st.Validate(t, token)
		return r.Valid && r.Source == validation.SourceCache
	})
}

// checkShown checks what a valid answer shows of session s: its id (for a
// table whose id is the credential, only a hash of it), user and expiry.
func (st *storeTest) checkShown(t testing.TB, r validation.Result, s testenv.StoreSession) {
	t.Helper()
	if r.Session == nil {
		t.Fatalf("valid from %s without a session", r.Source)
	}
	want := s.ID
	if st.Table.SecretID {
		want = st.Table.IDHash(s.ID).Hex()
		if r.Session.ID == s.Token {
			t.Fatalf("the answer from %s shows the %s itself as the session id", r.Source, st.Table.ID.Name)
		}
	}
	if r.Session.ID != want {
		t.Fatalf("session id from %s is %q, want %q", r.Source, r.Session.ID, want)
	}
	if st.Table.UserID.Name != "" && r.Session.UserID != s.User {
		t.Fatalf("user from %s is %q, want %q", r.Source, r.Session.UserID, s.User)
	}
	if !r.Session.ExpiresAt.Equal(s.ExpiresAt) {
		t.Fatalf("expiry from %s is %v, the row holds %v", r.Source, r.Session.ExpiresAt, s.ExpiresAt)
	}
}

// The store's credential is read as the store's clients present it: the
// first answer comes from Postgres and fills, the second from the cache.
func (st *storeTest) missThenHit(t *testing.T) {
	s := st.signIn(t, st.user(t), time.Time{})
	st.WatermarkFresh(t, 10*time.Second) // the INSERT's drop is in: the fill is not voided
	r := st.Validate(t, s.Presented)
	if !r.Valid || r.Source != validation.SourceDatabase {
		t.Fatalf("first answer: valid %v from %s, want valid from the database", r.Valid, r.Source)
	}
	st.checkShown(t, r, s)
	r = st.Validate(t, s.Presented)
	if !r.Valid || r.Source != validation.SourceCache {
		t.Fatalf("second answer: valid %v from %s, want valid from the cache", r.Valid, r.Source)
	}
	st.checkShown(t, r, s)
	if st.name == source.BetterAuth {
		// The cookie holds the same signed value URL-encoded: same entry.
		if r := st.Validate(t, testenv.EncodeURIComponent(s.Presented)); !r.Valid || r.Source != validation.SourceCache {
			t.Fatalf("the cookie's form: valid %v from %s, want valid from the cache", r.Valid, r.Source)
		}
	}
	st.noCredentialInRedis(t)
}

// A revocation of one session, warm in the cache, is refused within
// signOutBound; the user's other session (unless the form ends them all)
// and another user's stay served from the cache.
func (st *storeTest) revoke(t *testing.T, rev storeRevocation) {
	user := st.user(t)
	a := st.signIn(t, user, time.Time{})
	b := st.signIn(t, user, time.Time{})
	other := st.signIn(t, st.user(t), time.Time{})
	for _, s := range []testenv.StoreSession{a, b, other} {
		st.Warm(t, s.Presented)
	}
	start := time.Now()
	rev.end(t, st.World, a)
	st.Refused(t, a.Presented, signOutBound)
	t.Logf("%s refused %v after the commit", rev.name, time.Since(start))
	ended := []testenv.StoreSession{a}
	if rev.all {
		st.Refused(t, b.Presented, signOutBound)
		ended = append(ended, b)
	} else {
		st.cachedValid(t, b.Presented)
	}
	st.cachedValid(t, other.Presented)
	for _, s := range ended {
		st.StaysRefused(t, s.Presented)
	}
}

// The revocation committed and applied while a validator was between its
// Postgres read and its fill: the fill is refused (for a DELETE naming only
// the id, by the row's tombstone), and the session is never served valid
// afterwards.
func (st *storeTest) fillRacing(t *testing.T, rev storeRevocation) {
	s := st.signIn(t, st.user(t), time.Time{})
	st.WatermarkFresh(t, 10*time.Second)
	ran := false
	svc, reg := racingService(st.World, func() {
		rev.end(t, st.World, s)
		st.WatermarkFresh(t, 10*time.Second) // the revocation is applied
		ran = true
	})
	r, err := svc.Validate(context.Background(), s.Presented)
	if err != nil || !r.Valid || r.Source != validation.SourceDatabase {
		t.Fatalf("the read before the revocation: %+v %v", r, err)
	}
	if !ran {
		t.Fatal("the hook did not run")
	}
	if en := st.Entry(t, s.Presented); en != nil && !en.Negative {
		t.Fatalf("a fill that raced the revocation landed: %+v", en.Session)
	}
	if n := testenv.Counter(t, reg, "sessionguard_cache_fills_total", "refused"); n != 1 {
		t.Fatalf("%v fills refused, want the racing one", n)
	}
	st.StaysRefused(t, s.Presented)
}

// express-session touches the row on every request (an UPDATE of expire
// alone): the session stays valid, its entry is updated in place (never
// dropped, so never missed), and nothing is flushed.
func (st *storeTest) touch(t *testing.T) {
	ctx := context.Background()
	s := st.signIn(t, st.user(t), time.Time{})
	st.Warm(t, s.Presented)
	// A flush the slot's creation still owes would land in the middle.
	testenv.WaitFor(t, 30*time.Second, "no pending recheck flush", func() bool {
		rc, err := st.Cache.Recheck(ctx)
		return err == nil && rc == 0
	})
	flushes := st.c.Status().Flushes
	svc := validation.New(st.Store, validation.Options{Credentials: st.Creds, Cache: st.Cache, CacheEnabled: true,
		MaxStaleness: testenv.WorldStaleness, Identity: st.Identity})
	var want time.Time
	for i := 1; i <= 3; i++ {
		// Requests a second apart, each resetting the store's day.
		expire := time.Now().Add(testenv.ConnectPGSimpleTTL + time.Duration(i)*time.Second)
		storeDo(t, testenv.ConnectPGSimpleTouch(ctx, st.Pool, s.Token, expire))
		want = time.Unix((expire.UnixMilli()+999)/1000, 0) // to_timestamp of the whole seconds, rounded up
		r, err := svc.Validate(ctx, s.Presented)
		if err != nil || !r.Valid {
			t.Fatalf("validation after touch %d: %+v %v", i, r, err)
		}
	}
	st.WatermarkFresh(t, 10*time.Second)
	if en := st.Entry(t, s.Presented); en == nil || en.Negative || !en.Session.ExpiresAt.Equal(want) {
		t.Fatalf("the cached entry after the touches: %+v, want expiry %v", en, want)
	}
	st.cachedValid(t, s.Presented)
	if n := svc.Stats().Misses; n != 0 {
		t.Fatalf("%d misses during the touches: a touch dropped the entry", n)
	}
	if n := st.c.Status().Flushes; n != flushes {
		t.Fatalf("%d flushes during the touches", n-flushes)
	}
}

// expiryWatch validates a session ending storeExpiresIn after it starts,
// from just after it is warm until it is refused from the cache.
type expiryWatch struct {
	st   *storeTest
	s    testenv.StoreSession
	done chan struct{}
	obs  []expiryObservation // written by the watcher until done
}

type expiryObservation struct {
	start, end time.Time
	r          validation.Result
	err        error
}

func (st *storeTest) watchExpiry(t *testing.T) *expiryWatch {
	t.Helper()
	w := &expiryWatch{st: st, done: make(chan struct{})}
	w.s = st.signIn(t, st.user(t), time.Now().Add(storeExpiresIn))
	// A timestamp without time zone (connect-pg-simple's expire, written by
	// to_timestamp in the writer's zone; Kratos's, in UTC) is read in the
	// table's zone (UTC unless SESSION_TIMESTAMP_ZONE says otherwise).
	var tz string
	if err := st.Pool.QueryRow(context.Background(), `SELECT current_setting('TimeZone')`).Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if want := st.Table.Location().String(); tz != want {
		t.Fatalf("the store writes in time zone %s, the World reads in %s", tz, want)
	}
	if d := time.Until(w.s.ExpiresAt); d <= 0 || d > storeExpiresIn+time.Second {
		t.Fatalf("the row's expiry, read in %s, is %v from now, want about %v", tz, d, storeExpiresIn)
	}
	st.Warm(t, w.s.Presented)
	if !time.Now().Before(w.s.ExpiresAt) {
		t.Fatalf("warming took longer than the session's %v", storeExpiresIn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-w.done })
	stop := w.s.ExpiresAt.Add(10 * time.Second)
	go func() {
		defer close(w.done)
		for ctx.Err() == nil && time.Now().Before(stop) {
			o := expiryObservation{start: time.Now()}
			o.r, o.err = st.Service.Validate(ctx, w.s.Presented)
			o.end = time.Now()
			w.obs = append(w.obs, o)
			if o.err == nil && !o.r.Valid && o.r.Source == validation.SourceCache && o.start.After(w.s.ExpiresAt) {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

// check: valid until the expiry and refused from then on, at last from the
// cache, while the row did not change.
func (w *expiryWatch) check(t *testing.T) {
	<-w.done
	exp := w.s.ExpiresAt
	var hit, refusedFromCache bool
	for _, o := range w.obs {
		switch {
		case o.err != nil:
			t.Fatalf("validation at %v: %v", o.start.Sub(exp), o.err)
		case o.r.Valid && !o.start.Before(exp):
			t.Fatalf("served valid from %s %v after its expiry", o.r.Source, o.start.Sub(exp))
		case !o.r.Valid && o.end.Before(exp):
			t.Fatalf("refused from %s %v before its expiry, with no change to its row", o.r.Source, exp.Sub(o.end))
		}
		hit = hit || o.r.Valid && o.r.Source == validation.SourceCache
		refusedFromCache = refusedFromCache || !o.r.Valid && o.r.Source == validation.SourceCache
	}
	if !hit || !refusedFromCache {
		t.Fatalf("in %d validations: served from the cache before the expiry %v, refused from it after %v", len(w.obs), hit, refusedFromCache)
	}
	var n int
	q := `SELECT count(*) FROM ` + pgx.Identifier{w.st.Table.Relation()}.Sanitize() + ` WHERE ` + pgx.Identifier{w.st.Table.ID.Name}.Sanitize() + `::text = $1`
	if err := w.st.Pool.QueryRow(context.Background(), q, w.s.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the expired row: %d rows (%v), want it still there", n, err)
	}
}

// TRUNCATE of the store's table flushes the cache.
func (st *storeTest) truncate(t *testing.T) {
	s := st.signIn(t, st.user(t), time.Time{})
	st.Warm(t, s.Presented)
	st.Exec(t, `TRUNCATE `+pgx.Identifier{st.Table.Relation()}.Sanitize())
	st.Refused(t, s.Presented, signOutBound)
	st.StaysRefused(t, s.Presented)
	if n := testenv.Counter(t, st.reg, "sessionguard_invalidator_cache_flushes_total", "truncate"); n != 1 {
		t.Fatalf("%v flushes for a truncate, want 1", n)
	}
}

// noCredentialInRedis reads every key and value in the World's Redis: none
// holds a credential signed in so far (a raw token, sid or session key, a
// presented value, or the id of a table whose id is the credential).
func (st *storeTest) noCredentialInRedis(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	keys, err := st.RDB.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	entries := 0
	for _, k := range keys {
		if strings.Contains(k, ":s:") {
			entries++
		}
		texts := []string{k}
		var vals []string
		switch typ := st.RDB.Type(ctx, k).Val(); typ {
		case "string":
			v, err := st.RDB.Get(ctx, k).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			vals = []string{v}
		case "hash":
			for f, v := range st.RDB.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "set":
			vals = st.RDB.SMembers(ctx, k).Val()
		case "list":
			vals = st.RDB.LRange(ctx, k, 0, -1).Val()
		case "zset":
			vals = st.RDB.ZRange(ctx, k, 0, -1).Val()
		case "none": // expired meanwhile
		default:
			t.Fatalf("key %s is a Redis %s, which this check does not read", k, typ)
		}
		texts = append(texts, vals...)
		for _, text := range texts {
			for i, secret := range st.secrets {
				if strings.Contains(text, secret) {
					t.Fatalf("Redis key %s holds credential #%d of the store in clear", k, i)
				}
			}
		}
	}
	if entries == 0 || len(st.secrets) == 0 {
		t.Fatalf("nothing to check: %d entries, %d credentials", entries, len(st.secrets))
	}
}
