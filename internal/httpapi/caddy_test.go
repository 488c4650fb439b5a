package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// documentedCaddyfile returns the Caddy example of docs/api.md, the one the
// documentation tells people to use, so that what is tested is what is
// documented.
func documentedCaddyfile(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n### Caddy forward_auth\n")
	if !ok {
		t.Fatal("docs/api.md has no \"### Caddy forward_auth\" section")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	_, block, ok := strings.Cut(section, "```caddyfile\n")
	if !ok {
		t.Fatal("the Caddy section of docs/api.md has no ```caddyfile block")
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("the ```caddyfile block of docs/api.md is not closed")
	}
	return block + "\n"
}

// caddyGlobal confines the test's Caddy: no admin endpoint, no HTTPS, no
// certificate work, loopback only.
const caddyGlobal = `{
	admin off
	auto_https off
	default_bind 127.0.0.1
}

`

// startCaddy runs caddy with the documented Caddyfile, only its addresses
// replaced: the site is served on a free loopback port, forward_auth asks
// validator and the app is backend. It returns caddy's base URL.
func startCaddy(t *testing.T, validator, backend string) string {
	t.Helper()
	bin := findProxy(t, "caddy", "caddy", "/usr/bin", "/usr/local/bin")
	dir := t.TempDir()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	host := func(s string) string { u, _ := url.Parse(s); return u.Host }
	site := documentedCaddyfile(t)
	for _, r := range [][2]string{
		{"app.example.com", "http://" + addr},
		{"validator:8080", host(validator)},
		{"app:3000", host(backend)},
	} {
		if n := strings.Count(site, r[0]); n != 1 {
			t.Fatalf("the documented Caddyfile holds %q %d times, want once:\n%s", r[0], n, site)
		}
		site = strings.Replace(site, r[0], r[1], 1)
	}
	confPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(caddyGlobal+site), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own copy
	showLog := func() string {
		b, _ := os.ReadFile(logPath)
		return fmt.Sprintf("Caddyfile:\n%s%s\ncaddy log:\n%s", caddyGlobal, site, b)
	}

	cmd := exec.Command(bin, "run", "--config", confPath, "--adapter", "caddyfile")
	cmd.Dir = dir
	// Caddy keeps its state (autosave, storage) under these; keep it in dir.
	cmd.Env = append(os.Environ(), "HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	return runProxy(t, cmd, addr, syscall.SIGTERM, showLog)
}

// A real Caddy forward_auth, configured exactly as docs/api.md says, in
// front of an app: valid bearer and cookie sessions get through with the
// validator's headers copied onto the request (a client's own identity
// headers never reach the app), everything else is the validator's 401, and
// a revocation through the admin API shuts the door at once.
func TestCaddyForwardAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{adminToken: adminToken})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s session=%s expires=%s\n%s\n%s",
			r.Header.Get("X-User-Id"), r.Header.Get("X-Session-Id"), r.Header.Get("X-Session-Expires-At"),
			r.Header.Get("X-User-Role"), r.Header.Get("X-User-Aal"))
	}))
	t.Cleanup(backend.Close)
	caddy := startCaddy(t, e.srv.URL, backend.URL)

	uid := uuid.NewString()
	tok, id := e.newSession(t, uid, time.Hour)
	revoked, rid := e.newSession(t, "", time.Hour)
	e.exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, rid)
	a := e.call(t, "GET", "/v1/auth", "", bearer(tok)...)
	expires := a.header.Get("X-Session-Expires-At")
	if a.status != 200 || expires == "" {
		t.Fatalf("validator /v1/auth: %d %q, expires %q", a.status, a.body, expires)
	}
	through := "user=" + uid + " session=" + id + " expires=" + expires
	forged := []string{"X-User-Id", "attacker", "X-Session-Id", "forged-session",
		"X-Session-Expires-At", "2999-01-01T00:00:00Z", "X-User-Role", "service_role", "X-User-Aal", "aal2"}

	cases := []struct {
		name   string
		hdr    []string
		status int
		body   string // for 401s, the validator's JSON error code
	}{
		{"bearer", bearer(tok), 200, through},
		{"cookie", []string{"Cookie", "theme=dark; session=" + tok}, 200, through},
		{"spoofed identity headers are replaced", append(bearer(tok), forged...), 200, through},
		{"spoofed identity headers with a cookie", append([]string{"Cookie", "session=" + tok}, forged...), 200, through},
		{"no credentials", nil, 401, "missing_token"},
		{"unknown token", bearer("forged"), 401, "invalid_token"},
		{"unknown cookie", []string{"Cookie", "session=forged"}, 401, "invalid_token"},
		{"revoked", bearer(revoked), 401, "invalid_token"},
		{"spoofed headers without a session", append([]string{"X-User-Id", uid, "X-Session-Id", id}, forged[4:]...), 401, "missing_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, caddy, "GET", "/app/orders?x=1", "", c.hdr...)
			if r.status != c.status {
				t.Fatalf("got %d %q, want %d", r.status, r.body, c.status)
			}
			if c.status == 200 {
				lines := strings.Split(string(r.body), "\n")
				if len(lines) != 3 || lines[0] != c.body {
					t.Fatalf("app saw %q, want %q", r.body, c.body)
				}
				// The validator sends no X-User-Role or X-User-Aal for
				// this source. The app must not see the client's values:
				// it sees none (Caddy 2.10+) or, before Caddy 2.10
				// (caddyserver/caddy#6610), the unexpanded placeholder.
				for i, h := range []string{"X-User-Role", "X-User-Aal"} {
					if v := lines[i+1]; v != "" && v != "{http.reverse_proxy.header."+h+"}" {
						t.Fatalf("app saw %s %q, want none (or Caddy's placeholder)", h, v)
					}
				}
				return
			}
			// Caddy hands the validator's own answer to the client.
			wantJSONError(t, r, c.status, c.body)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 without WWW-Authenticate: %v", r.header)
			}
		})
	}

	// Served from the cache now; revoke through the admin API.
	if r := e.call(t, "DELETE", "/v1/sessions/"+id, "", bearer(adminToken)...); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := call(t, caddy, "GET", "/app/orders", "", bearer(tok)...); r.status != 401 {
		t.Fatalf("after revocation: %d %s", r.status, r.body)
	}
}
