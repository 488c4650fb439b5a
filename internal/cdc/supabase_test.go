package cdc_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// The invalidator following the Supabase auth server's auth.sessions: every
// way the auth server (or anyone) ends a session reaches the validators as
// a revocation of our own table does.

// signOutBound is how long a sign-out may take to be refused by a validator
// that served the session from the cache: milliseconds in practice (the
// benchmark measures it); generous here for a loaded test machine.
const signOutBound = time.Second

// supabaseEnv is a SupabaseWorld with its invalidator running.
type supabaseEnv struct {
	*env
	sb *testenv.SupabaseWorld
}

func newSupabaseEnv(t *testing.T, rule session.Rule) *supabaseEnv {
	t.Helper()
	sb := testenv.NewSupabaseWorld(t, rule)
	e := &supabaseEnv{env: newEnvOn(t, sb.World, testenv.SupabasePublication), sb: sb}
	e.consumer(t, nil)
	return e
}

// signedIn signs a session of user in and warms it into the cache.
func (e *supabaseEnv) signedIn(t *testing.T, user string) (token, id string) {
	t.Helper()
	token, id = e.sb.SignIn(t, user)
	e.Warm(t, token)
	return token, id
}

// servedFromCache checks that token is still valid, from the cache.
func (e *supabaseEnv) servedFromCache(t *testing.T, token string) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "the session still served valid from the cache", func() bool {
		r := e.Validate(t, token)
		return r.Valid && r.Source == validation.SourceCache
	})
}

// Sign-out (scope local): the auth server deletes the session's row. The
// same JWT is refused within milliseconds; the user's other session stays
// valid, from the cache.
func TestSupabaseSignOutRefused(t *testing.T) {
	t.Parallel()
	e := newSupabaseEnv(t, session.Rule{})
	user := testenv.NewUser()
	a, aID := e.signedIn(t, user)
	b, _ := e.signedIn(t, user)
	start := time.Now()
	e.Exec(t, `DELETE FROM auth.sessions WHERE id = $1`, aID)
	e.Refused(t, a, signOutBound)
	t.Logf("sign-out refused %v after the commit", time.Since(start))
	e.servedFromCache(t, b)
	e.StaysRefused(t, a)
}

// Global sign-out deletes every session of the user; deleting the user
// deletes its sessions by cascade, each reaching the stream as its own
// DELETE. Other users are untouched.
func TestSupabaseGlobalSignOutAndDeletedUser(t *testing.T) {
	t.Parallel()
	e := newSupabaseEnv(t, session.Rule{})
	u1, u2, u3 := testenv.NewUser(), testenv.NewUser(), testenv.NewUser()
	a1, _ := e.signedIn(t, u1)
	a2, _ := e.signedIn(t, u1)
	b1, _ := e.signedIn(t, u2)
	b2, _ := e.signedIn(t, u2)
	c, _ := e.signedIn(t, u3)

	e.Exec(t, `DELETE FROM auth.sessions WHERE user_id = $1`, u1)
	e.Refused(t, a1, signOutBound)
	e.Refused(t, a2, signOutBound)
	e.servedFromCache(t, b1)

	e.Exec(t, `DELETE FROM auth.users WHERE id = $1`, u2)
	e.Refused(t, b1, signOutBound)
	e.Refused(t, b2, signOutBound)
	e.servedFromCache(t, c)
	for _, tok := range []string{a1, a2, b1, b2} {
		e.StaysRefused(t, tok)
	}
}

// UPDATEs carry only the new row (default replica identity). A refresh
// keeps the session valid and its entry current; not_after in the past, an
// aal downgrade and another user_id each end what the old JWT may do.
func TestSupabaseRowUpdates(t *testing.T) {
	t.Parallel()
	e := newSupabaseEnv(t, session.Rule{})

	// Refresh, as the auth server does on every token refresh.
	tok, id := e.signedIn(t, testenv.NewUser())
	e.Exec(t, `UPDATE auth.sessions SET refreshed_at = now() AT TIME ZONE 'UTC', updated_at = now() WHERE id = $1`, id)
	e.WatermarkFresh(t, 10*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the refresh in the cached entry", func() bool {
		en := e.Entry(t, tok)
		return en != nil && !en.Negative && !en.Session.LastActive.IsZero()
	})
	e.servedFromCache(t, tok)

	// not_after passed (a SAML session's end moved back).
	tok, id = e.signedIn(t, testenv.NewUser())
	e.Exec(t, `UPDATE auth.sessions SET not_after = now() - interval '1 second' WHERE id = $1`, id)
	e.Refused(t, tok, signOutBound)
	e.StaysRefused(t, tok)

	// The MFA factor removed: the auth server downgrades the session to
	// aal1, so an aal2 token of it is refused while an aal1 one is not.
	user := testenv.NewUser()
	_, id = e.sb.SignIn(t, user)
	e.Exec(t, `UPDATE auth.sessions SET aal = 'aal2' WHERE id = $1`, id)
	aal2 := e.sb.Token(t, user, id, map[string]any{"aal": "aal2"})
	e.Warm(t, aal2)
	e.Exec(t, `UPDATE auth.sessions SET aal = 'aal1' WHERE id = $1`, id)
	e.RefusedWithin(t, aal2, signOutBound)
	e.StaysRefused(t, aal2)
	if r := e.Validate(t, e.sb.Token(t, user, id, nil)); !r.Valid {
		t.Fatalf("an aal1 token of the downgraded session refused (source %s)", r.Source)
	}

	// The row now belongs to another user.
	tok, id = e.signedIn(t, testenv.NewUser())
	other := testenv.NewUser()
	e.sb.SignIn(t, other) // creates the user
	e.Exec(t, `UPDATE auth.sessions SET user_id = $2 WHERE id = $1`, id, other)
	e.RefusedWithin(t, tok, signOutBound)
	e.StaysRefused(t, tok)
}

// TRUNCATE of auth.sessions (CASCADE: refresh tokens and MFA claims refer to
// it) flushes the cache.
func TestSupabaseTruncateFlushes(t *testing.T) {
	t.Parallel()
	e := newSupabaseEnv(t, session.Rule{})
	tok, _ := e.signedIn(t, testenv.NewUser())
	e.Exec(t, `TRUNCATE auth.sessions CASCADE`)
	e.Refused(t, tok, signOutBound)
	e.StaysRefused(t, tok)
}

// not_after passing needs no event: the cached entry holds it, and the
// validator judges it at every hit.
func TestSupabaseNotAfterPassesWithoutEvent(t *testing.T) {
	t.Parallel()
	e := newSupabaseEnv(t, session.Rule{})
	user := testenv.NewUser()
	_, id := e.sb.SignIn(t, user)
	e.Exec(t, `UPDATE auth.sessions SET not_after = now() + interval '3 seconds' WHERE id = $1`, id)
	tok := e.sb.Token(t, user, id, nil)
	e.Warm(t, tok)
	testenv.WaitFor(t, 10*time.Second, "refused from the cache once not_after passed", func() bool {
		r := e.Validate(t, tok)
		return !r.Valid && r.Source == validation.SourceCache
	})
}

// lookupHook runs hook once, between the validator's Postgres read and its
// fill: the exact interleaving in which a stale fill could land.
type lookupHook struct {
	*pg.Store
	hook atomic.Pointer[func()]
}

// racingService is a validation service of world w whose Postgres reads
// run hook (once) before their fill, counting into its own registry.
func racingService(w *testenv.World, hook func()) (*validation.Service, *prometheus.Registry) {
	store := &lookupHook{Store: w.Store}
	store.hook.Store(&hook)
	reg := prometheus.NewRegistry()
	return validation.New(store, validation.Options{Credentials: w.Creds, Cache: w.Cache, CacheEnabled: true,
		MaxStaleness: testenv.WorldStaleness, Identity: w.Identity, Metrics: validation.NewMetrics(reg)}), reg
}

func (l *lookupHook) Lookup(ctx context.Context, k session.Key) (pg.Found, error) {
	f, err := l.Store.Lookup(ctx, k)
	if h := l.hook.Swap(nil); h != nil {
		(*h)()
	}
	return f, err
}

// A sign-out committed and applied while a validator was between reading
// the row and filling the cache: the fill is refused, and the JWT is never
// served valid afterwards.
func TestSupabaseFillRacingSignOutNeverLands(t *testing.T) {
	t.Parallel()
	e := newSupabaseEnv(t, session.Rule{})
	tok, id := e.sb.SignIn(t, testenv.NewUser())
	e.WatermarkFresh(t, 10*time.Second)
	svc, reg := racingService(e.World, func() {
		e.Exec(t, `DELETE FROM auth.sessions WHERE id = $1`, id)
		e.WatermarkFresh(t, 10*time.Second) // the DELETE is applied
	})
	r, err := svc.Validate(context.Background(), tok)
	if err != nil || !r.Valid || r.Source != validation.SourceDatabase {
		t.Fatalf("the read before the sign-out: %+v %v", r, err)
	}
	if en := e.Entry(t, tok); en != nil && !en.Negative {
		t.Fatalf("a fill that raced the sign-out landed: %+v", en.Session)
	}
	if n := testenv.Counter(t, reg, "sessionguard_cache_fills_total", "refused"); n != 1 {
		t.Fatalf("%v fills refused, want the racing one", n)
	}
	e.StaysRefused(t, tok)
}

// The watermark vouches for auth.sessions only while every change of it
// reaches the stream with its id: a replica identity of NOTHING stops the
// watermark (validators go to Postgres) and names the fix; restoring the
// default flushes and lets the cache serve again.
func TestSupabaseReplicaIdentityDriftStopsTheWatermark(t *testing.T) {
	t.Parallel()
	sb := testenv.NewSupabaseWorld(t, session.Rule{})
	e := newEnvOn(t, sb.World, testenv.SupabasePublication)
	c, _ := e.consumer(t, nil)
	tok, _ := sb.SignIn(t, testenv.NewUser())
	e.Warm(t, tok)
	e.Exec(t, `ALTER TABLE auth.sessions REPLICA IDENTITY NOTHING`)
	testenv.WaitFor(t, 10*time.Second, "the source problem reported", func() bool {
		for _, p := range c.Status().SourceProblems {
			if strings.Contains(p, "REPLICA IDENTITY NOTHING") && strings.Contains(p, "REPLICA IDENTITY DEFAULT") {
				return true
			}
		}
		return false
	})
	testenv.WaitFor(t, 10*time.Second, "hits no longer trusted", func() bool {
		r := e.Validate(t, tok)
		return r.Valid && r.Source == validation.SourceDatabase
	})
	e.Exec(t, `ALTER TABLE auth.sessions REPLICA IDENTITY DEFAULT`)
	testenv.WaitFor(t, 10*time.Second, "the source healthy again", func() bool { return len(c.Status().SourceProblems) == 0 })
	e.Warm(t, tok)

	// An index that merely INCLUDEs id: its included columns are not in the
	// replica identity, so a DELETE still would not carry id.
	e.Exec(t, `CREATE UNIQUE INDEX sessions_user_incl_id ON auth.sessions (user_id) INCLUDE (id)`)
	e.Exec(t, `ALTER TABLE auth.sessions REPLICA IDENTITY USING INDEX sessions_user_incl_id`)
	testenv.WaitFor(t, 10*time.Second, "the included-column identity reported", func() bool {
		for _, p := range c.Status().SourceProblems {
			if strings.Contains(p, "REPLICA IDENTITY an index without id") {
				return true
			}
		}
		return false
	})
}
