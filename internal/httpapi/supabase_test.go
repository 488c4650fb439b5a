package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// The API with SESSION_SOURCE=supabase: access tokens of the Supabase auth
// server, verified and looked up in auth.sessions. No invalidator runs, so
// answers come from Postgres unless a test writes a watermark itself.

// supaRule is the deployment's timeouts in these tests: long enough that a
// fresh session's deadline is its token's exp.
var supaRule = session.Rule{Timebox: 24 * time.Hour, Inactivity: 8 * time.Hour}

// authInvalidBody is every /v1/auth refusal of a presented token.
const authInvalidBody = `{"error":"invalid_token"}` + "\n"

// supaEnv is the validator API over a SupabaseWorld.
type supaEnv struct {
	w   *testenv.SupabaseWorld
	url string // API reading sb-<ref>-auth-token by auto-detection
}

func newSupaEnv(t testing.TB, log *zap.Logger) *supaEnv {
	t.Helper()
	e := &supaEnv{w: testenv.NewSupabaseWorld(t, supaRule)}
	e.url = e.server(t, "", log)
	return e
}

// server serves the API over the world, reading the Supabase session cookie
// cookieName ("" auto-detects it). A logger also goes to the service, so
// that its logs are seen too.
func (e *supaEnv) server(t testing.TB, cookieName string, log *zap.Logger) string {
	t.Helper()
	w := e.w
	svc := w.Service
	if log != nil {
		svc = validation.New(w.Store, validation.Options{Credentials: w.Creds, Rule: supaRule, Cache: w.Cache,
			CacheEnabled: true, MaxStaleness: testenv.WorldStaleness, Identity: w.Identity, Logger: log})
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{
		Service: svc, Admin: validation.NewAdmin(w.Store, w.Cache, validation.AdminOptions{}), DB: w.Store,
		AdminToken: adminToken, MaxTokenLen: source.MaxJWTLen, UUIDIDs: true,
		SupabaseCookie: true, SupabaseCookieName: cookieName, Logger: log,
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (e *supaEnv) validate(t testing.TB, tok string) response {
	t.Helper()
	return call(t, e.url, "POST", "/v1/sessions/validate", "", bearer(tok)...)
}

func (e *supaEnv) auth(t testing.TB, hdr ...string) response {
	t.Helper()
	return call(t, e.url, "GET", "/v1/auth", "", hdr...)
}

// scalar runs a one-value query.
func (e *supaEnv) scalar(t testing.TB, dst any, sql string, args ...any) {
	t.Helper()
	if err := e.w.Pool.QueryRow(context.Background(), sql, args...).Scan(dst); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *supaEnv) rows(t testing.TB, where string, arg string) int {
	t.Helper()
	var n int
	e.scalar(t, &n, `SELECT count(*) FROM auth.sessions WHERE `+where, arg)
	return n
}

// claimsOf decodes a JWT's payload, unverified.
func claimsOf(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func expOf(t testing.TB, tok string) time.Time {
	t.Helper()
	exp, ok := claimsOf(t, tok)["exp"].(float64)
	if !ok {
		t.Fatal("token without exp")
	}
	return time.Unix(int64(exp), 0).UTC()
}

// sizedToken signs a token for the session exactly n bytes long, padding
// user_metadata as a user's profile data would.
func sizedToken(t testing.TB, w *testenv.SupabaseWorld, uid, sid string, n int) string {
	t.Helper()
	meta := func(k int) map[string]any {
		return map[string]any{"user_metadata": map[string]any{"bio": strings.Repeat("x", k)}}
	}
	base := len(w.Token(t, uid, sid, meta(0)))
	start := max(0, (n-base)*3/4-8)
	for k := start; k < start+32; k++ {
		tok := w.Token(t, uid, sid, meta(k))
		switch {
		case len(tok) == n:
			return tok
		case len(tok) > n:
			t.Fatalf("no token of exactly %d bytes (got %d)", n, len(tok))
		}
	}
	t.Fatalf("no token of exactly %d bytes", n)
	return ""
}

// ssrSession is the session JSON @supabase/ssr keeps in its cookie.
func ssrSession(t testing.TB, tok, uid string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"access_token": tok, "token_type": "bearer", "expires_in": 3600,
		"expires_at": time.Now().Add(time.Hour).Unix(), "refresh_token": "x",
		"user": map[string]any{"id": uid, "aud": "authenticated", "role": "authenticated", "email": uid + "@example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64Cookie(doc []byte) string { return "base64-" + base64.RawURLEncoding.EncodeToString(doc) }

func cookies(pairs ...string) []string {
	var c []string
	for i := 0; i+1 < len(pairs); i += 2 {
		c = append(c, pairs[i]+"="+pairs[i+1])
	}
	return []string{"Cookie", strings.Join(c, "; ")}
}

// chunked splits a cookie value into name.0 and name.1, as the helpers do
// with a large session.
func chunked(name, value string) []string {
	h := len(value) / 2
	return []string{name + ".0", value[:h], name + ".1", value[h:]}
}

func TestSupabaseValidate(t *testing.T) {
	t.Parallel()
	e := newSupaEnv(t, nil)
	uid := testenv.NewUser()
	tok, sid := e.w.SignIn(t, uid)

	s := wantValid(t, e.validate(t, tok), "database")
	var keys []string
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "aal,created_at,expires_at,id,role,user_id" {
		t.Fatalf("session fields %s", got)
	}
	if s["id"] != sid || s["user_id"] != uid || s["role"] != "authenticated" || s["aal"] != "aal1" {
		t.Fatalf("session %v, want id %s user %s role authenticated aal1", s, sid, uid)
	}
	var created time.Time
	e.scalar(t, &created, `SELECT created_at FROM auth.sessions WHERE id = $1`, sid)
	if got, err := time.Parse(time.RFC3339Nano, s["created_at"].(string)); err != nil || !got.Equal(created) {
		t.Fatalf("created_at %v (%v), want the row's %v", s["created_at"], err, created)
	}
	// No not_after and timeouts later than the token's end: exp decides.
	if got, err := time.Parse(time.RFC3339Nano, s["expires_at"].(string)); err != nil || !got.Equal(expOf(t, tok)) {
		t.Fatalf("expires_at %v (%v), want exp %v", s["expires_at"], err, expOf(t, tok))
	}
}

// Metadata makes access tokens several KiB; the JWT cap is 8 KiB, and what
// is over it is malformed: 400 on validate, 401 for a proxy.
func TestSupabaseTokenSizes(t *testing.T) {
	t.Parallel()
	e := newSupaEnv(t, nil)
	cases := []struct {
		name   string
		size   int // 0: the auth server's minimal token
		status int // of validate; /v1/auth answers 401 for any refusal
	}{
		{"minimal", 0, 200},
		{"over 1 KiB", 3000, 200},
		{"exactly 8 KiB", source.MaxJWTLen, 200},
		{"one byte over 8 KiB", source.MaxJWTLen + 1, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			uid := testenv.NewUser()
			tok, sid := e.w.SignIn(t, uid)
			if c.size > 0 {
				tok = sizedToken(t, e.w, uid, sid, c.size)
			}
			for _, r := range []response{
				e.validate(t, tok),
				call(t, e.url, "POST", "/v1/sessions/validate", `{"token":"`+tok+`"}`),
			} {
				if c.status != 200 {
					wantJSONError(t, r, c.status, "invalid_request")
					continue
				}
				if s := wantValid(t, r, "database"); s["id"] != sid {
					t.Fatalf("session %v, want %s", s["id"], sid)
				}
			}
			r := e.auth(t, bearer(tok)...)
			if c.status != 200 {
				wantJSONError(t, r, 401, "invalid_token")
				return
			}
			if r.status != 200 || r.header.Get("X-Session-Id") != sid {
				t.Fatalf("/v1/auth: %d session %q, want 200 %s", r.status, r.header.Get("X-Session-Id"), sid)
			}
		})
	}
}

func TestSupabaseForwardAuthHeaders(t *testing.T) {
	t.Parallel()
	e := newSupaEnv(t, nil)
	cases := []struct {
		name string
		// setup changes the row ($1 is its id) and returns the session's
		// expected end; "": the token's exp.
		setup string
		aal   string // of the token; "" keeps aal1
	}{
		{"exp first", "", ""},
		{"not_after first (SAML)", `UPDATE auth.sessions SET not_after = now() + interval '10 minutes' WHERE id = $1 RETURNING not_after`, ""},
		{"inactivity timeout first", `UPDATE auth.sessions SET refreshed_at = (now() - interval '7 hours 30 minutes') AT TIME ZONE 'UTC'
			WHERE id = $1 RETURNING (refreshed_at AT TIME ZONE 'UTC') + interval '8 hours'`, ""},
		{"timebox first", `UPDATE auth.sessions SET created_at = now() - interval '23 hours 30 minutes', refreshed_at = now() AT TIME ZONE 'UTC'
			WHERE id = $1 RETURNING created_at + interval '24 hours'`, ""},
		{"aal2", `UPDATE auth.sessions SET aal = 'aal2' WHERE id = $1 RETURNING NULL::timestamptz`, "aal2"},
		{"aal2 session, aal1 token", `UPDATE auth.sessions SET aal = 'aal2' WHERE id = $1 RETURNING NULL::timestamptz`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			uid := testenv.NewUser()
			tok, sid := e.w.SignIn(t, uid)
			wantAAL := "aal1"
			if c.aal != "" {
				tok, wantAAL = e.w.Token(t, uid, sid, map[string]any{"aal": c.aal}), c.aal
			}
			want := expOf(t, tok)
			if c.setup != "" {
				var end *time.Time
				e.scalar(t, &end, c.setup, sid)
				if end != nil {
					want = *end
				}
			}
			r := e.auth(t, bearer(tok)...)
			if r.status != 200 {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			for h, v := range map[string]string{
				"X-User-Id": uid, "X-Session-Id": sid, "X-User-Role": "authenticated", "X-User-Aal": wantAAL,
				"X-Session-Expires-At": want.UTC().Format(time.RFC3339), "Cache-Control": "no-store",
			} {
				if got := r.header.Get(h); got != v {
					t.Errorf("%s %q, want %q", h, got, v)
				}
			}
		})
	}
}

// Every refusal, before or after the lookup, looks the same to the client.
func TestSupabaseRefusals(t *testing.T) {
	t.Parallel()
	e := newSupaEnv(t, nil)
	w := e.w
	now := time.Now()
	signIn := func() (tok, uid, sid string) {
		uid = testenv.NewUser()
		tok, sid = w.SignIn(t, uid)
		return tok, uid, sid
	}
	token := func(extra map[string]any) string {
		_, uid, sid := signIn()
		return w.Token(t, uid, sid, extra)
	}
	resign := func(m jwt.SigningMethod, key []byte) string {
		tok, _, _ := signIn()
		s, err := jwt.NewWithClaims(m, jwt.MapClaims(claimsOf(t, tok))).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// after signs a session in, changes its row with sql ($1: session id,
	// $2: user id) and returns its token.
	after := func(sql string) string {
		tok, uid, sid := signIn()
		w.Exec(t, sql, sid, uid)
		return tok
	}
	algNone := func() string {
		tok, _, _ := signIn()
		hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		return hdr + "." + strings.Split(tok, ".")[1] + "."
	}
	forged := func() string {
		// The victim's claims under the signature of the attacker's own,
		// valid token.
		mine, _, _ := signIn()
		victim, _, _ := signIn()
		m, v := strings.Split(mine, "."), strings.Split(victim, ".")
		return m[0] + "." + v[1] + "." + m[2]
	}

	valid, _, _ := signIn()
	wantValid(t, e.validate(t, valid), "database") // the refusals below are not the setup's

	cases := []struct{ name, tok string }{
		{"signed with another secret", resign(jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-characters!!"))},
		{"claims not the signed ones", forged()},
		{"HS512 with the right secret", resign(jwt.SigningMethodHS512, []byte(testenv.SupabaseSecret))},
		{"alg none", algNone()},
		{"wrong audience", token(map[string]any{"aud": "other"})},
		{"no audience", token(map[string]any{"aud": nil})},
		{"expired", token(map[string]any{"exp": now.Add(-time.Minute).Unix()})},
		{"no exp", token(map[string]any{"exp": nil})},
		{"not yet valid", token(map[string]any{"nbf": now.Add(time.Hour).Unix()})},
		{"no session_id", token(map[string]any{"session_id": nil})},
		{"session_id not a uuid", token(map[string]any{"session_id": "not-a-uuid"})},
		{"session_id of no session", token(map[string]any{"session_id": uuid.NewString()})},
		{"no sub", token(map[string]any{"sub": nil})},
		{"sub not the session's user", token(map[string]any{"sub": testenv.NewUser()})},
		{"aal2 token, aal1 session", token(map[string]any{"aal": "aal2"})},
		{"session signed out", after(`DELETE FROM auth.sessions WHERE id = $1 AND user_id = $2`)},
		{"user deleted", after(`DELETE FROM auth.users WHERE id = $2 AND $1::uuid IS NOT NULL`)},
		{"not_after passed", after(`UPDATE auth.sessions SET not_after = now() - interval '1 second' WHERE id = $1 AND user_id = $2`)},
		{"timebox passed", after(`UPDATE auth.sessions SET created_at = now() - interval '25 hours', refreshed_at = now() AT TIME ZONE 'UTC'
			WHERE id = $1 AND user_id = $2`)},
		{"inactive too long", after(`UPDATE auth.sessions SET created_at = now() - interval '10 hours',
			refreshed_at = (now() - interval '9 hours') AT TIME ZONE 'UTC' WHERE id = $1 AND user_id = $2`)},
		{"not a JWT", "abc.def.ghi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := e.validate(t, c.tok)
			wantInvalid(t, r)
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Fatalf("validate: WWW-Authenticate %q", got)
			}
			r = e.auth(t, bearer(c.tok)...)
			if r.status != 401 || string(r.body) != authInvalidBody {
				t.Fatalf("/v1/auth: %d %q, want 401 %q", r.status, r.body, authInvalidBody)
			}
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Fatalf("/v1/auth: WWW-Authenticate %q", got)
			}
			for _, h := range []string{"X-User-Id", "X-Session-Id", "X-User-Role", "X-User-Aal", "X-Session-Expires-At"} {
				if v := r.header.Get(h); v != "" {
					t.Fatalf("/v1/auth refusal carries %s: %q", h, v)
				}
			}
		})
	}
}

// Supabase's SSR helpers keep the access token in a session cookie; a proxy
// forwards only the Cookie header.
func TestSupabaseCookies(t *testing.T) {
	t.Parallel()
	e := newSupaEnv(t, nil)
	const name = "sb-myref-auth-token"
	configured := e.server(t, name, nil)

	uid := testenv.NewUser()
	tok, sid := e.w.SignIn(t, uid)
	otherUID := testenv.NewUser()
	other, otherSID := e.w.SignIn(t, otherUID)
	bigSID := func() string { _, s := e.w.SignIn(t, uid); return s }()
	big := sizedToken(t, e.w, uid, bigSID, 3000) // a session JSON over the chunking threshold
	gone, goneSID := e.w.SignIn(t, uid)
	e.w.Exec(t, `DELETE FROM auth.sessions WHERE id = $1`, goneSID)

	b64 := b64Cookie(ssrSession(t, tok, uid))
	bigB64 := b64Cookie(ssrSession(t, big, uid))
	if len(bigB64) < 3180 {
		t.Fatalf("big session cookie is only %d bytes", len(bigB64))
	}
	noToken := b64Cookie([]byte(`{"token_type":"bearer","refresh_token":"x"}`))

	cases := []struct {
		name   string
		url    string
		hdr    []string
		status int
		want   string // 200: session id; else the error code
	}{
		{"base64 session", e.url, cookies(name, b64), 200, sid},
		{"chunked base64 session", e.url, cookies(chunked(name, bigB64)...), 200, bigSID},
		{"chunks out of order", e.url, cookies(name+".1", bigB64[len(bigB64)/2:], name+".0", bigB64[:len(bigB64)/2]), 200, bigSID},
		{"URL-encoded JSON", e.url, cookies(name, url.QueryEscape(string(ssrSession(t, tok, uid)))), 200, sid},
		{"older helpers' JSON array", e.url, cookies(name, url.QueryEscape(`["`+tok+`","x",null,null,null]`)), 200, sid},
		{"beside the PKCE code verifier cookie", e.url, cookies(name+"-code-verifier", "abc", name, b64), 200, sid},
		{"beside unrelated cookies", e.url, cookies("theme", "dark", name, b64, "_ga", "GA1.1"), 200, sid},
		{"signed-out session", e.url, cookies(name, b64Cookie(ssrSession(t, gone, uid))), 401, "invalid_token"},
		{"garbage value", e.url, cookies("sb-x-auth-token", "garbage"), 401, "invalid_token"},
		{"base64 that does not decode", e.url, cookies(name, "base64-!!!"), 401, "invalid_token"},
		{"session JSON without access_token", e.url, cookies(name, noToken), 401, "invalid_token"},
		{"garbage Supabase cookie beats a session cookie", e.url, cookies(name, "garbage", "session", tok), 401, "invalid_token"},
		// Without a configured name two projects' cookies cannot be told
		// apart: neither is read, and the request is refused (the log says
		// to set SUPABASE_COOKIE).
		{"two projects, no name configured", e.url, cookies(name, b64, "sb-otherref-auth-token", b64Cookie(ssrSession(t, other, otherUID))), 401, "invalid_token"},
		{"plain session cookie", e.url, cookies("session", tok), 200, sid},
		{"no credentials", e.url, nil, 401, "missing_token"},
		{"bearer wins over the cookie", e.url, append(bearer(other), cookies(name, b64)...), 200, otherSID},
		{"bad bearer is not rescued by the cookie", e.url, append(bearer("nope"), cookies(name, b64)...), 401, "invalid_token"},

		{"configured name", configured, cookies(name, b64), 200, sid},
		{"configured name, chunked", configured, cookies(chunked(name, bigB64)...), 200, bigSID},
		{"configured name picks its project", configured, cookies("sb-otherref-auth-token", b64Cookie(ssrSession(t, other, otherUID)), name, b64), 200, sid},
		{"configured name, only another project's cookie", configured, cookies("sb-otherref-auth-token", b64), 401, "missing_token"},
		{"configured name, garbage", configured, cookies(name, "garbage"), 401, "invalid_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := call(t, c.url, "GET", "/v1/auth", "", c.hdr...)
			if c.status != 200 {
				wantJSONError(t, r, c.status, c.want)
				if r.header.Get("X-Session-Id") != "" {
					t.Fatalf("refusal carries X-Session-Id %q", r.header.Get("X-Session-Id"))
				}
				return
			}
			if r.status != 200 || r.header.Get("X-Session-Id") != c.want {
				t.Fatalf("status %d session %q, want 200 %s (%s)", r.status, r.header.Get("X-Session-Id"), c.want, r.body)
			}
		})
	}
}

func TestSupabaseAdmin(t *testing.T) {
	t.Parallel()
	e := newSupaEnv(t, nil)
	adm := bearer(adminToken)

	t.Run("create is not this source's", func(t *testing.T) {
		t.Parallel()
		// No method creates sessions here: not even one that a 405 to
		// another method would list.
		for _, m := range []string{"POST", "GET", "PUT", "DELETE"} {
			r := call(t, e.url, m, "/v1/sessions", `{"user_id":"`+testenv.NewUser()+`"}`, adm...)
			wantJSONError(t, r, 405, "method_not_allowed")
			if allow, ok := r.header["Allow"]; !ok || len(allow) != 1 || allow[0] != "" {
				t.Fatalf("%s: Allow %q (present %v), want present and empty", m, allow, ok)
			}
		}
		// The admin token is still checked first.
		wantJSONError(t, call(t, e.url, "POST", "/v1/sessions", `{}`), 401, "unauthorized")
	})

	t.Run("revoke one session", func(t *testing.T) {
		t.Parallel()
		uid := testenv.NewUser()
		tok, sid := e.w.SignIn(t, uid)
		kept, _ := e.w.SignIn(t, uid)
		// Served from the cache, so the revocation must drop the entry.
		e.fresh(t)
		wantValid(t, e.validate(t, tok), "database")
		wantValid(t, e.validate(t, tok), "cache")

		if r := call(t, e.url, "DELETE", "/v1/sessions/"+sid, "", adm...); r.status != 204 || len(r.body) != 0 {
			t.Fatalf("revoke: %d %q, want 204", r.status, r.body)
		}
		if n := e.rows(t, "id = $1", sid); n != 0 {
			t.Fatalf("%d auth.sessions rows left, want the row deleted", n)
		}
		e.fresh(t)
		wantInvalid(t, e.validate(t, tok))
		wantValid(t, e.validate(t, kept), "database") // the user's other session stays
		// The row is gone, so there is nothing to revoke again.
		wantJSONError(t, call(t, e.url, "DELETE", "/v1/sessions/"+sid, "", adm...), 404, "not_found")
	})

	t.Run("revoke a user's sessions", func(t *testing.T) {
		t.Parallel()
		uid := testenv.NewUser()
		t1, _ := e.w.SignIn(t, uid)
		t2, _ := e.w.SignIn(t, uid)
		bystander, _ := e.w.SignIn(t, testenv.NewUser())
		e.fresh(t)
		for _, tok := range []string{t1, t2} {
			e.validate(t, tok)
			wantValid(t, e.validate(t, tok), "cache")
		}

		r := call(t, e.url, "DELETE", "/v1/users/"+uid+"/sessions", "", adm...)
		if r.status != 200 || string(r.body) != `{"revoked":2}`+"\n" {
			t.Fatalf("revoke user: %d %s, want 200 {\"revoked\":2}", r.status, r.body)
		}
		if n := e.rows(t, "user_id = $1", uid); n != 0 {
			t.Fatalf("%d auth.sessions rows of the user left, want 0", n)
		}
		e.fresh(t)
		wantInvalid(t, e.validate(t, t1))
		wantInvalid(t, e.validate(t, t2))
		wantValid(t, e.validate(t, bystander), "database")
		r = call(t, e.url, "DELETE", "/v1/users/"+uid+"/sessions", "", adm...)
		if r.status != 200 || string(r.body) != `{"revoked":0}`+"\n" {
			t.Fatalf("revoke user again: %d %s, want 200 {\"revoked\":0}", r.status, r.body)
		}
	})
}

// fresh writes a watermark of the world's own database at Redis's now, as
// the invalidator would, so that the cache may answer for 2s.
func (e *supaEnv) fresh(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	now, err := e.w.Cache.Time(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.w.Cache.SetWatermark(ctx, cache.Watermark{At: now, Source: e.w.Identity.Current()}); err != nil {
		t.Fatal(err)
	}
}

// No access token, part of one, cookie value, JWT secret or admin token
// reaches a log line, at debug level, whatever happens to the request.
func TestSupabaseNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	e := newSupaEnv(t, zap.New(core))
	w := e.w
	uid := testenv.NewUser()
	tok, sid := w.SignIn(t, uid)
	big := sizedToken(t, w, uid, sid, source.MaxJWTLen+1)
	badSig, err := testenv.SupabaseAccessToken([]byte("another-secret-of-at-least-32-characters!!"), uid, sid, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	expired := w.Token(t, uid, sid, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})
	aal2 := w.Token(t, uid, sid, map[string]any{"aal": "aal2"})
	doomed, doomedSID := w.SignIn(t, uid)
	cookie := b64Cookie(ssrSession(t, tok, uid))
	badCookie := "%zz" + tok // bad URL encoding around a real token

	secrets := []string{testenv.SupabaseSecret, adminToken, cookie, badCookie}
	for _, jt := range []string{tok, big, badSig, expired, aal2, doomed} {
		parts := strings.Split(jt, ".")
		secrets = append(secrets, jt, parts[1], parts[2])
	}

	e.validate(t, tok)
	call(t, e.url, "POST", "/v1/sessions/validate", `{"token":"`+tok+`"}`)
	call(t, e.url, "POST", "/v1/sessions/validate", `{"token":"`+tok+`"`) // malformed
	for _, jt := range []string{big, badSig, expired, aal2} {
		e.validate(t, jt)
		e.auth(t, bearer(jt)...)
	}
	call(t, e.url, "GET", "/v1/auth/app?access_token="+tok, "", cookies("sb-ref-auth-token", cookie)...)
	e.auth(t, cookies(chunked("sb-ref-auth-token", cookie)...)...)
	e.auth(t, cookies("sb-ref-auth-token", badCookie)...)
	e.auth(t, cookies("session", tok)...)
	call(t, e.url, "DELETE", "/v1/sessions/"+doomedSID, "", bearer(adminToken)...)
	e.validate(t, doomed)
	call(t, e.url, "DELETE", "/v1/users/"+uid+"/sessions", "", bearer(adminToken)...)
	if err := w.Redis.Stop(); err != nil { // failure paths log errors
		t.Fatal(err)
	}
	e.validate(t, tok)
	e.auth(t, bearer(tok)...)

	// The paths that log are the ones exercised.
	for msg, least := range map[string]int{
		"request":                                    20,
		"token refused before any lookup":            4,
		"supabase session cookie refused":            1,
		"redis call failed; answering from Postgres": 1,
	} {
		if n := logs.FilterMessage(msg).Len(); n < least {
			t.Fatalf("%d %q logs, want at least %d: is debug logging on?", n, msg, least)
		}
	}
	for _, entry := range logs.All() {
		b, _ := json.Marshal(entry.ContextMap())
		line := entry.Message + " " + string(b)
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Fatalf("log line carries a secret: %s", line)
			}
		}
		if strings.Contains(line, "Bearer") || strings.Contains(line, "Cookie") {
			t.Fatalf("log line carries a credential header: %s", line)
		}
	}
}
