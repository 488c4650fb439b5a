package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessionguard/sessionguard/internal/httpapi"
)

func TestValidateRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	tok, _ := e.newSession(t, "", time.Hour)
	body := func(tok string) string { return `{"token":"` + tok + `"}` }
	long := strings.Repeat("a", 1025)

	cases := []struct {
		name   string
		body   string
		hdr    []string
		status int
		code   string // error code for failures
	}{
		{"bearer", "", bearer(tok), 200, ""},
		{"body", body(tok), nil, 200, ""},
		{"bearer scheme is case-insensitive", "", []string{"Authorization", "bEaReR " + tok}, 200, ""},
		{"header and body agree", body(tok), bearer(tok), 200, ""},
		{"unknown fields are ignored", `{"token":"` + tok + `","client":"x"}`, nil, 200, ""},
		{"header and body differ", body("other"), bearer(tok), 400, "invalid_request"},
		{"bad JSON", `{"token":`, nil, 400, "invalid_request"},
		{"not an object", `["x"]`, nil, 400, "invalid_request"},
		{"token not a string", `{"token":5}`, nil, 400, "invalid_request"},
		{"trailing data", body(tok) + ` {}`, nil, 400, "invalid_request"},
		{"no token at all", "", nil, 400, "invalid_request"},
		{"empty object", `{}`, nil, 400, "invalid_request"},
		{"misspelt field", `{"tokn":"` + tok + `"}`, nil, 400, "invalid_request"},
		{"empty token", body(""), nil, 400, "invalid_request"},
		{"empty bearer", "", []string{"Authorization", "Bearer "}, 400, "invalid_request"},
		{"basic auth", "", []string{"Authorization", "Basic dTpw"}, 400, "invalid_request"},
		{"token over 1 KiB", body(long), nil, 400, "invalid_request"},
		{"bearer over 1 KiB", "", bearer(long), 400, "invalid_request"},
		{"token of exactly 1 KiB is well-formed", body(long[:1024]), nil, 401, "invalid_token"},
		{"body over 16 KiB", body(strings.Repeat("a", 17000)), nil, 413, "request_too_large"},
		{"unknown token", body("no-such-token"), nil, 401, "invalid_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := e.call(t, "POST", "/v1/sessions/validate", c.body, c.hdr...)
			if c.status == 200 {
				wantValid(t, r, r.json(t)["source"].(string))
				return
			}
			if c.status == 401 {
				wantInvalid(t, r)
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 without WWW-Authenticate: %v", r.header)
				}
				return
			}
			wantJSONError(t, r, c.status, c.code)
		})
	}
}

func TestMissThenHit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	uid := uuid.NewString()
	tok, id := e.newSession(t, uid, time.Hour)
	first := wantValid(t, e.validate(t, tok), "database")
	second := wantValid(t, e.validate(t, tok), "cache")
	if first["id"] != id || first["user_id"] != uid {
		t.Fatalf("session %v, want id %s user %s", first, id, uid)
	}
	for k, v := range first {
		if second[k] != v {
			t.Fatalf("cached session differs at %s: %v vs %v", k, second[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, first["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at: %v", err)
	}
}

// Unknown, revoked and expired tokens must be indistinguishable, whether the
// answer comes from Postgres or from a cached negative entry.
func TestInvalidTokensLookAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	revoked, rid := e.newSession(t, "", time.Hour)
	e.exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, rid)
	expired, _ := e.newSession(t, "", -time.Second)
	for _, tok := range []string{"never-issued", revoked, expired} {
		for range 2 { // database, then the negative cache entry
			r := e.validate(t, tok)
			wantInvalid(t, r)
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
		}
	}
}

func TestForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{sessionCookie: "sid"})
	uid := uuid.NewString()
	tok, id := e.newSession(t, uid, time.Hour)
	revoked, rid := e.newSession(t, "", time.Hour)
	e.exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, rid)
	cookie := func(v string) []string { return []string{"Cookie", "sid=" + v} }
	cases := []struct {
		name   string
		method string
		path   string
		hdr    []string
		status int
	}{
		{"bearer", "GET", "/v1/auth", bearer(tok), 200},
		{"cookie", "GET", "/v1/auth", cookie(tok), 200},
		{"HEAD", "HEAD", "/v1/auth", bearer(tok), 200},
		{"original method (ext_authz)", "DELETE", "/v1/auth", bearer(tok), 200},
		{"original path appended (ext_authz)", "POST", "/v1/auth/api/orders?x=1", bearer(tok), 200},
		{"original path with a double slash", "GET", "/v1/auth//api/x", bearer(tok), 200},
		{"original path with dot-dot", "GET", "/v1/auth/a/../b", bearer(tok), 200},
		{"original path with dot", "GET", "/v1/auth/./x", bearer(tok), 200},
		{"original path climbing out", "GET", "/v1/auth/../../admin", bearer(tok), 200},
		{"subtree root", "GET", "/v1/auth/", bearer(tok), 200},
		{"dot-dot path without a token", "GET", "/v1/auth/a/../b", nil, 401},
		{"basic header is not ours, cookie used", "GET", "/v1/auth", append([]string{"Authorization", "Basic dTpw"}, cookie(tok)...), 200},
		{"bearer wins over cookie", "GET", "/v1/auth", append(bearer("wrong"), cookie(tok)...), 401},
		{"other cookie name ignored", "GET", "/v1/auth", []string{"Cookie", "session=" + tok}, 401},
		{"nothing", "GET", "/v1/auth", nil, 401},
		{"unknown", "GET", "/v1/auth", bearer("nope"), 401},
		{"revoked", "GET", "/v1/auth", bearer(revoked), 401},
		{"revoked cookie", "GET", "/v1/auth", cookie(revoked), 401},
		{"token over 1 KiB is 401, not 400", "GET", "/v1/auth", bearer(strings.Repeat("x", 2000)), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := e.call(t, c.method, c.path, "", c.hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (%s)", r.status, c.status, r.body)
			}
			if c.status != 200 {
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 without WWW-Authenticate Bearer: %v", r.header)
				}
				if r.header.Get("X-User-Id") != "" || r.header.Get("X-Session-Id") != "" {
					t.Fatalf("identity headers on a refusal: %v", r.header)
				}
				return
			}
			if r.header.Get("X-User-Id") != uid || r.header.Get("X-Session-Id") != id {
				t.Fatalf("headers %v, want user %s session %s", r.header, uid, id)
			}
			exp, err := time.Parse(time.RFC3339, r.header.Get("X-Session-Expires-At"))
			if err != nil || time.Until(exp) < 50*time.Minute || time.Until(exp) > 61*time.Minute {
				t.Fatalf("X-Session-Expires-At %q (%v)", r.header.Get("X-Session-Expires-At"), err)
			}
		})
	}
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	on := newEnv(t, envOpts{adminToken: adminToken})
	off := newEnv(t, envOpts{noRedis: true})
	uid := uuid.NewString()
	endpoints := []struct{ method, path, body string }{
		{"POST", "/v1/sessions", `{"user_id":"` + uid + `"}`},
		{"DELETE", "/v1/sessions/" + uuid.NewString(), ""},
		{"DELETE", "/v1/users/" + uid + "/sessions", ""},
	}
	auths := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"missing", nil, 401},
		{"wrong", bearer("test-admin-token-0123456780"), 401},
		{"prefix of the right one", bearer(adminToken[:10]), 401},
		{"right token, wrong scheme", []string{"Authorization", "Basic " + adminToken}, 401},
		{"right", bearer(adminToken), 0}, // anything but 401/404
	}
	for _, ep := range endpoints {
		for _, a := range auths {
			t.Run(ep.method+" "+ep.path[:12]+" "+a.name, func(t *testing.T) {
				t.Parallel()
				r := on.call(t, ep.method, ep.path, ep.body, a.hdr...)
				if a.status == 0 {
					if r.status == 401 || r.status == 404 && ep.method == "POST" || r.status >= 500 {
						t.Fatalf("right token got %d %s", r.status, r.body)
					}
				} else {
					wantJSONError(t, r, a.status, "unauthorized")
				}
				// Disabled admin API: 404 whatever the credentials.
				wantJSONError(t, off.call(t, ep.method, ep.path, ep.body, a.hdr...), 404, "not_found")
			})
		}
		// A disabled admin API answers 404 to every method, never a 405
		// that would reveal the route; an enabled one answers 405.
		for _, m := range []string{"GET", "PUT", "PATCH", "HEAD", "OPTIONS"} {
			t.Run(m+" "+ep.path[:12]+" wrong method", func(t *testing.T) {
				t.Parallel()
				r := off.call(t, m, ep.path, "", bearer(adminToken)...)
				if m == "HEAD" {
					if r.status != 404 {
						t.Fatalf("disabled, HEAD: status %d, want 404", r.status)
					}
				} else {
					wantJSONError(t, r, 404, "not_found")
				}
				if r.header.Get("Allow") != "" {
					t.Fatalf("disabled admin API reveals Allow: %q", r.header.Get("Allow"))
				}
				if r := on.call(t, m, ep.path, "", bearer(adminToken)...); r.status != 405 {
					t.Fatalf("enabled, %s: status %d, want 405", m, r.status)
				}
			})
		}
	}
}

func TestAdminCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{adminToken: adminToken})
	uid := uuid.NewString()
	create := func(body string) response {
		return e.call(t, "POST", "/v1/sessions", body, bearer(adminToken)...)
	}
	cases := []struct {
		name   string
		body   string
		status int
		ttl    time.Duration
	}{
		{"default ttl", `{"user_id":"` + uid + `"}`, 201, 24 * time.Hour},
		{"ttl", `{"user_id":"` + uid + `","ttl":"90m"}`, 201, 90 * time.Minute},
		{"upper-case uuid", `{"user_id":"` + strings.ToUpper(uid) + `","ttl":"1h"}`, 201, time.Hour},
		{"bad uuid", `{"user_id":"42"}`, 400, 0},
		{"uuid without dashes", `{"user_id":"` + strings.ReplaceAll(uid, "-", "") + `"}`, 400, 0},
		{"missing user", `{"ttl":"1h"}`, 400, 0},
		{"negative ttl", `{"user_id":"` + uid + `","ttl":"-1h"}`, 400, 0},
		{"zero ttl", `{"user_id":"` + uid + `","ttl":"0s"}`, 400, 0},
		{"ttl of 1ns", `{"user_id":"` + uid + `","ttl":"1ns"}`, 400, 0},
		{"ttl below 1s", `{"user_id":"` + uid + `","ttl":"999ms"}`, 400, 0},
		{"ttl of 1s", `{"user_id":"` + uid + `","ttl":"1s"}`, 201, time.Second},
		{"ttl too long", `{"user_id":"` + uid + `","ttl":"10000h"}`, 400, 0},
		{"ttl not a duration", `{"user_id":"` + uid + `","ttl":"tomorrow"}`, 400, 0},
		{"ttl as a number", `{"user_id":"` + uid + `","ttl":3600}`, 400, 0},
		{"unknown field", `{"user_id":"` + uid + `","tll":"1h"}`, 400, 0},
		{"empty body", ``, 400, 0},
		{"bad JSON", `{"user_id":`, 400, 0},
		{"body over 16 KiB", `{"user_id":"` + strings.Repeat("a", 17000) + `"}`, 413, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := create(c.body)
			if c.status != 201 {
				code := "invalid_request"
				if c.status == 413 {
					code = "request_too_large"
				}
				wantJSONError(t, r, c.status, code)
				return
			}
			if r.status != 201 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var out struct {
				Token   string `json:"token"`
				Session struct {
					ID        string    `json:"id"`
					UserID    string    `json:"user_id"`
					CreatedAt time.Time `json:"created_at"`
					ExpiresAt time.Time `json:"expires_at"`
				} `json:"session"`
			}
			if err := json.Unmarshal(r.body, &out); err != nil {
				t.Fatal(err)
			}
			if out.Session.UserID != uid {
				t.Fatalf("user_id %s, want %s", out.Session.UserID, uid)
			}
			if got := out.Session.ExpiresAt.Sub(out.Session.CreatedAt); got < c.ttl-time.Second || got > c.ttl+time.Second {
				t.Fatalf("lifetime %v, want %v", got, c.ttl)
			}
			s := wantValid(t, e.validate(t, out.Token), "database")
			if s["id"] != out.Session.ID {
				t.Fatalf("validated session %v, want %s", s["id"], out.Session.ID)
			}
		})
	}
}

func TestAdminRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{adminToken: adminToken})
	adm := bearer(adminToken)
	uid := uuid.NewString()
	tok, id := e.newSession(t, uid, time.Hour)
	other, _ := e.newSession(t, uid, time.Hour)
	third, _ := e.newSession(t, uid, time.Hour)
	for _, tk := range []string{tok, other, third} {
		e.validate(t, tk)
		wantValid(t, e.validate(t, tk), "cache") // cached, so revocation must drop it
	}

	if r := e.call(t, "DELETE", "/v1/sessions/"+id, "", adm...); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("revoke: %d %q", r.status, r.body)
	}
	wantInvalid(t, e.validate(t, tok))
	if r := e.call(t, "DELETE", "/v1/sessions/"+id, "", adm...); r.status != 204 {
		t.Fatalf("revoking again: %d, want 204 (idempotent)", r.status)
	}
	wantJSONError(t, e.call(t, "DELETE", "/v1/sessions/"+uuid.NewString(), "", adm...), 404, "not_found")
	wantJSONError(t, e.call(t, "DELETE", "/v1/sessions/not-a-uuid", "", adm...), 400, "invalid_request")
	wantJSONError(t, e.call(t, "DELETE", "/v1/users/not-a-uuid/sessions", "", adm...), 400, "invalid_request")

	r := e.call(t, "DELETE", "/v1/users/"+uid+"/sessions", "", adm...)
	if r.status != 200 || r.json(t)["revoked"] != 2.0 {
		t.Fatalf("revoke user: %d %s, want 200 revoked 2", r.status, r.body)
	}
	wantInvalid(t, e.validate(t, other))
	wantInvalid(t, e.validate(t, third))
	r = e.call(t, "DELETE", "/v1/users/"+uid+"/sessions", "", adm...)
	if r.status != 200 || string(r.body) != `{"revoked":0}`+"\n" {
		t.Fatalf("revoke user again: %d %s", r.status, r.body)
	}
}

// With Redis down a revocation is committed but its cache entry may stay:
// the API says so with a 503 that tells the caller a retry is safe.
func TestAdminWithRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{adminToken: adminToken})
	adm := bearer(adminToken)
	uid := uuid.NewString()
	tok, id := e.newSession(t, uid, time.Hour)
	if err := e.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	r := e.call(t, "DELETE", "/v1/sessions/"+id, "", adm...)
	wantJSONError(t, r, 503, "cache_invalidation_failed")
	if msg := r.json(t)["message"].(string); !strings.Contains(msg, "committed") || !strings.Contains(msg, "safe") {
		t.Fatalf("message %q should say the revocation is committed and a retry is safe", msg)
	}
	wantInvalid(t, e.validate(t, tok)) // Postgres answers meanwhile

	e.newSession(t, uid, time.Hour)
	r = e.call(t, "DELETE", "/v1/users/"+uid+"/sessions", "", adm...)
	wantJSONError(t, r, 503, "cache_invalidation_failed")
	if r.json(t)["revoked"] != 1.0 || !strings.Contains(r.json(t)["message"].(string), "committed") {
		t.Fatalf("user revocation with redis down: %s", r.body)
	}

	// Creating does not need Redis.
	if r := e.call(t, "POST", "/v1/sessions", `{"user_id":"`+uid+`"}`, adm...); r.status != 201 {
		t.Fatalf("create with redis down: %d %s", r.status, r.body)
	}
	if err := e.redis.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.call(t, "DELETE", "/v1/sessions/"+id, "", adm...); r.status != 204 {
		t.Fatalf("retry after redis is back: %d %s", r.status, r.body)
	}
}

func TestRoutesAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRedis: true})
	if r := e.call(t, "GET", "/livez", ""); r.status != 200 || r.json(t)["status"] != "ok" {
		t.Fatalf("livez: %d %s", r.status, r.body)
	}
	if r := e.call(t, "GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	wantJSONError(t, e.call(t, "GET", "/nope", ""), 404, "not_found")
	r := e.call(t, "GET", "/v1/sessions/validate", "")
	wantJSONError(t, r, 405, "method_not_allowed")
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Fatalf("405 Allow %q", r.header.Get("Allow"))
	}
	wantJSONError(t, e.call(t, "PUT", "/livez", ""), 405, "method_not_allowed")
	// Paths the mux would clean with a text/html redirect: a JSON 404.
	for _, p := range []string{"//v1/auth", "//livez", "/livez/../livez", "/./readyz", "/v1/sessions//validate"} {
		r := e.call(t, "GET", p, "")
		wantJSONError(t, r, 404, "not_found")
		if r.header.Get("Location") != "" {
			t.Fatalf("%s: redirect to %q", p, r.header.Get("Location"))
		}
	}
	// Forward auth under odd paths counts under its own route label.
	if r := e.call(t, "GET", "/v1/auth/a/../b", ""); r.status != 401 {
		t.Fatalf("/v1/auth/a/../b: %d %s", r.status, r.body)
	}
	e.validate(t, "x")

	r = e.call(t, "GET", "/metrics", "")
	if r.status != 200 {
		t.Fatalf("metrics: %d", r.status)
	}
	for _, want := range []string{
		`sessionguard_http_requests_total{code="404",route="unmatched"} 6`,
		`sessionguard_http_requests_total{code="401",route="/v1/auth/"} 1`,
		`sessionguard_http_requests_total{code="405",route="unmatched"} 2`,
		`sessionguard_http_requests_total{code="401",route="POST /v1/sessions/validate"} 1`,
		`sessionguard_http_requests_total{code="200",route="GET /livez"} 1`,
		`sessionguard_http_request_duration_seconds_bucket{route="GET /readyz",le="+Inf"} 1`,
		`sessionguard_validations_total{result="invalid",source="database"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A panic below the API is a 500 with a JSON body and an error log; the
// server keeps serving. (A nil Service is the only way to make the real
// code panic.)
func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	srv := newServerFor(t, httpapi.Options{Logger: zap.New(core)})
	wantJSONError(t, call(t, srv, "POST", "/v1/sessions/validate", "", bearer("x")...), 500, "internal")
	if n := logs.FilterMessage("panic while serving a request").FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Fatalf("%d panic logs, want 1", n)
	}
	if r := call(t, srv, "GET", "/livez", ""); r.status != 200 {
		t.Fatalf("livez after panic: %d", r.status)
	}
}

// No token, admin token, Authorization or Cookie header reaches a log line,
// at debug level, whatever happens to the request.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	e := newEnv(t, envOpts{adminToken: adminToken, logger: log})
	tok, id := e.newSession(t, "", time.Hour)
	secrets := []string{tok, adminToken, "unknown-token-value", "cookie-token-value"}
	e.validate(t, tok)
	e.validate(t, tok)
	e.call(t, "POST", "/v1/sessions/validate", `{"token":"unknown-token-value"}`)
	e.call(t, "POST", "/v1/sessions/validate", `{"token":"`+tok+`"`) // malformed
	e.call(t, "GET", "/v1/auth/path?token="+tok, "", "Cookie", "session=cookie-token-value")
	r := e.call(t, "POST", "/v1/sessions", `{"user_id":"`+uuid.NewString()+`"}`, bearer(adminToken)...)
	created, _ := r.json(t)["token"].(string)
	secrets = append(secrets, created)
	e.call(t, "DELETE", "/v1/sessions/"+id, "", bearer(adminToken)...)
	if err := e.redis.Stop(); err != nil { // failure paths log errors
		t.Fatal(err)
	}
	e.validate(t, tok)
	e.call(t, "DELETE", "/v1/sessions/"+id, "", bearer(adminToken)...)

	if logs.FilterMessage("request").Len() < 8 {
		t.Fatalf("only %d request logs: is debug logging on?", logs.FilterMessage("request").Len())
	}
	for _, entry := range logs.All() {
		b, _ := json.Marshal(entry.ContextMap())
		line := entry.Message + " " + string(b)
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Fatalf("log line carries a secret: %s", line)
			}
		}
		if strings.Contains(line, "Bearer") || strings.Contains(line, "Cookie") {
			t.Fatalf("log line carries a credential header: %s", line)
		}
	}
}

func newServerFor(t testing.TB, o httpapi.Options) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(o))
	t.Cleanup(srv.Close)
	return srv.URL
}
