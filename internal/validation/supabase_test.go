package validation_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// countingStore counts Postgres lookups.
type countingStore struct {
	validation.Store
	n atomic.Int64
}

func (c *countingStore) Lookup(ctx context.Context, k session.Key) (pg.Found, error) {
	c.n.Add(1)
	return c.Store.Lookup(ctx, k)
}

// countingHook counts Redis commands.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// rsaJWKS writes a key set holding key's public half as kid to a file and
// returns its file:// URL.
func rsaJWKS(t *testing.T, key *rsa.PrivateKey, kid string) string {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{j.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return "file://" + path
}

func signed(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A token that fails verification is refused without a single Redis
// command or Postgres query, whatever is wrong with it.
func TestSupabaseBadTokensNeverReachRedisOrPostgres(t *testing.T) {
	t.Parallel()
	w := testenv.NewSupabaseWorld(t, session.Rule{})
	user := testenv.NewUser()
	good, id := w.SignIn(t, user)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	// The JWT secret and an RS256 key set together: no token may cross over.
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: []byte(testenv.SupabaseSecret), JWKSURL: rsaJWKS(t, rsaKey, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: w.Store}
	hook := &countingHook{}
	w.RDB.AddHook(hook)
	svc := validation.New(store, validation.Options{Credentials: source.JWT{Verifier: v}, Cache: w.Cache, CacheEnabled: true,
		MaxStaleness: testenv.WorldStaleness, Identity: w.Identity})

	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		now := time.Now()
		c := jwt.MapClaims{"aud": "authenticated", "sub": user, "session_id": id, "role": "authenticated", "aal": "aal1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: func() []byte {
		b, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()})
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, parts[2][:1]) + parts[2][1:]
	noneClaims, _ := json.Marshal(claims(nil))

	for name, tok := range map[string]string{
		"bad signature":                       tampered,
		"signed by another secret":            signed(t, jwt.SigningMethodHS256, []byte("another-secret-that-is-long-enough-1234"), "", claims(nil)),
		"wrong audience":                      signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", claims(func(c jwt.MapClaims) { c["aud"] = "service" })),
		"expired":                             signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
		"no exp":                              signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", claims(func(c jwt.MapClaims) { delete(c, "exp") })),
		"not yet valid":                       signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() })),
		"alg none":                            b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(noneClaims) + ".",
		"HS256 keyed with the RSA public key": signed(t, jwt.SigningMethodHS256, pubPEM, "k1", claims(nil)),
		"RS256 by a key not in the set":       signed(t, jwt.SigningMethodRS256, other, "k1", claims(nil)),
		"no session_id (a service key)":       signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", claims(func(c jwt.MapClaims) { delete(c, "session_id"); c["role"] = "service_role" })),
		"session_id not a uuid":               signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", claims(func(c jwt.MapClaims) { c["session_id"] = "x' OR 1=1" })),
		"not a JWT at all":                    "opaque-token",
	} {
		r, err := svc.Validate(context.Background(), tok)
		if err != nil || r.Valid || r.Source != validation.SourceToken {
			t.Errorf("%s: %+v %v, want refused on the token alone", name, r, err)
		}
	}
	if n, q := hook.n.Load(), store.n.Load(); n != 0 || q != 0 {
		t.Fatalf("refused tokens made %d Redis commands and %d Postgres lookups, want none", n, q)
	}
	// The same service does look up a good token, signed either way.
	for _, tok := range []string{good, signed(t, jwt.SigningMethodRS256, rsaKey, "k1", claims(nil))} {
		if r, err := svc.Validate(context.Background(), tok); err != nil || !r.Valid {
			t.Fatalf("a good token: %+v %v", r, err)
		}
	}
	if hook.n.Load() == 0 || store.n.Load() == 0 {
		t.Fatal("a good token was not looked up: the counters cannot fail")
	}
}

// Miss then hit, and what the answer says: the claims, and the earliest end
// of the session (the token's exp, or not_after when sooner).
func TestSupabaseMissThenHit(t *testing.T) {
	t.Parallel()
	w := testenv.NewSupabaseWorld(t, session.Rule{})
	setWatermark(t, w.Cache, 0, w.Identity.Current())
	user := testenv.NewUser()
	tok, id := w.SignIn(t, user)
	r := w.Validate(t, tok)
	if !r.Valid || r.Source != validation.SourceDatabase || r.Session.ID != id || r.Session.UserID != user ||
		r.Credential.Role != "authenticated" || r.Credential.AAL != "aal1" {
		t.Fatalf("first validation: %+v", r)
	}
	exp := r.Credential.ExpiresAt
	if !r.ExpiresAt.Equal(exp) {
		t.Fatalf("expires at %v, want the token's exp %v", r.ExpiresAt, exp)
	}
	if r = w.Validate(t, tok); !r.Valid || r.Source != validation.SourceCache {
		t.Fatalf("second validation: %+v", r)
	}
	w.Exec(t, `UPDATE auth.sessions SET not_after = now() + interval '10 minutes' WHERE id = $1`, id)
	w.Cache.Invalidate(context.Background(), w.Table.KeyOf(id).Hash) //nolint:errcheck // the invalidator's part
	r = w.Validate(t, tok)
	if !r.Valid || !r.ExpiresAt.Before(exp) || time.Until(r.ExpiresAt) > 11*time.Minute {
		t.Fatalf("with not_after in 10 minutes: %+v", r)
	}
}

// The row must back what the token claims: its user and at least its
// assurance level. A session id in another spelling names the same entry.
func TestSupabaseClaimsMustMatchTheRow(t *testing.T) {
	t.Parallel()
	w := testenv.NewSupabaseWorld(t, session.Rule{})
	setWatermark(t, w.Cache, 0, w.Identity.Current())
	user := testenv.NewUser()
	_, id := w.SignIn(t, user)
	for name, extra := range map[string]map[string]any{
		"another user's token": {"sub": testenv.NewUser()},
		"aal2 on an aal1 row":  {"aal": "aal2"},
	} {
		// From Postgres (the row is cached, valid), then from the cache.
		if _, err := w.Cache.Apply(context.Background(), []cache.Op{cache.Drop(w.Table.KeyOf(id).Hash)}); err != nil {
			t.Fatal(err)
		}
		for _, src := range []validation.Source{validation.SourceDatabase, validation.SourceCache} {
			if r := w.Validate(t, w.Token(t, user, id, extra)); r.Valid || r.Source != src {
				t.Errorf("%s: valid=%v from %s, want refused from %s", name, r.Valid, r.Source, src)
			}
		}
	}
	upper := w.Token(t, user, id, map[string]any{"session_id": strings.ToUpper(id)})
	lower := w.Token(t, user, id, nil)
	w.Validate(t, lower)
	if r := w.Validate(t, upper); !r.Valid || r.Source != validation.SourceCache {
		t.Fatalf("upper-case session_id: %+v, want the lower-case one's cache entry", r)
	}
	w.Exec(t, `DELETE FROM auth.sessions WHERE id = $1`, id)
	w.Cache.Invalidate(context.Background(), w.Table.KeyOf(id).Hash) //nolint:errcheck // the invalidator's part
	if r := w.Validate(t, upper); r.Valid {
		t.Fatal("upper-case session_id valid after the row was deleted")
	}
}

// SESSION_TIMEBOX and SESSION_INACTIVITY_TIMEOUT end sessions as the auth
// server does, though no event marks them: from the cache too.
func TestSupabaseTimeboxAndInactivity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rule session.Rule
		// setup ages the session's row.
		setup string
	}{
		{"timebox", session.Rule{Timebox: time.Hour}, `UPDATE auth.sessions SET created_at = now() - interval '59 minutes 57 seconds' WHERE id = $1`},
		{"inactivity, never refreshed", session.Rule{Inactivity: time.Hour}, `UPDATE auth.sessions SET created_at = now() - interval '59 minutes 57 seconds' WHERE id = $1`},
		{"inactivity since the last refresh", session.Rule{Inactivity: time.Hour},
			`UPDATE auth.sessions SET created_at = now() - interval '3 hours', refreshed_at = (now() - interval '59 minutes 57 seconds') AT TIME ZONE 'UTC' WHERE id = $1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := testenv.NewSupabaseWorld(t, tc.rule)
			setWatermark(t, w.Cache, 0, w.Identity.Current())
			user := testenv.NewUser()
			_, id := w.SignIn(t, user)
			w.Exec(t, tc.setup, id)
			tok := w.Token(t, user, id, nil)
			if r := w.Validate(t, tok); !r.Valid || time.Until(r.ExpiresAt) > 5*time.Second {
				t.Fatalf("before the end: %+v (its end should be seconds away)", r)
			}
			testenv.WaitFor(t, 10*time.Second, "refused from the cache at the end", func() bool {
				setWatermark(t, w.Cache, 0, w.Identity.Current())
				r := w.Validate(t, tok)
				return !r.Valid && r.Source == validation.SourceCache
			})
		})
	}
}

// A token without session_id (Supabase's service key: no session, no sub,
// no audience) stands on its signature alone only when its role is allowed
// (JWT_SESSIONLESS_ROLES), and then nothing is looked up.
func TestSupabaseTokenWithoutSession(t *testing.T) {
	t.Parallel()
	w := testenv.NewSupabaseWorld(t, session.Rule{})
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: []byte(testenv.SupabaseSecret)})
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: w.Store}
	svc := validation.New(store, validation.Options{Credentials: source.JWT{Verifier: v, SessionlessRoles: []string{"service_role"}},
		Cache: w.Cache, CacheEnabled: true})
	key := func(role string) string {
		return signed(t, jwt.SigningMethodHS256, []byte(testenv.SupabaseSecret), "", jwt.MapClaims{
			"iss": "supabase", "ref": "abcdefghijklmnopqrst", "role": role,
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	}
	r, err := svc.Validate(context.Background(), key("service_role"))
	if err != nil || !r.Valid || r.Source != validation.SourceToken || r.Credential.Role != "service_role" || r.Session != nil {
		t.Fatalf("allowed service key: %+v %v", r, err)
	}
	for name, tok := range map[string]string{
		"anon key":                     key("anon"),
		"user token without a session": w.Token(t, testenv.NewUser(), "", map[string]any{"session_id": nil}),
		"a session but no audience":    w.Token(t, testenv.NewUser(), testenv.NewUser(), map[string]any{"aud": nil}),
		"a session but no sub":         w.Token(t, "", testenv.NewUser(), map[string]any{"sub": nil}),
		"an unknown aal":               w.Token(t, testenv.NewUser(), testenv.NewUser(), map[string]any{"aal": "AAL2"}),
		"a control byte in the role":   w.Token(t, testenv.NewUser(), testenv.NewUser(), map[string]any{"role": "authenticated\x00x"}),
		"a line break in sub":          w.Token(t, "a\r\nX-User-Role: service_role", testenv.NewUser(), nil),
	} {
		if r, err := svc.Validate(context.Background(), tok); err != nil || r.Valid || r.Source != validation.SourceToken {
			t.Errorf("%s: %+v %v, want refused on the token alone", name, r, err)
		}
	}
	if store.n.Load() != 0 {
		t.Fatal("a token refused or accepted on its own was looked up")
	}
	if r := w.Validate(t, key("service_role")); r.Valid {
		t.Fatal("a service key valid where no role is allowed without a session")
	}
}
