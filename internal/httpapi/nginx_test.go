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

const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {{dir}}/body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;
  server {
    listen 127.0.0.1:{{port}};
    location = /_auth {
      internal;
      proxy_pass http://{{validator}}/v1/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }
    location /app/ {
      auth_request /_auth;
      auth_request_set $user $upstream_http_x_user_id;
      auth_request_set $sid $upstream_http_x_session_id;
      proxy_set_header X-User-Id $user;
      proxy_set_header X-Session-Id $sid;
      proxy_pass http://{{backend}};
    }
  }
}
`

// startNginx runs nginx in front of backend, asking validator for every
// request under /app/. It returns nginx's base URL.
func startNginx(t *testing.T, validator, backend string) string {
	t.Helper()
	bin := findProxy(t, "nginx", "nginx-light", "/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")
	dir := t.TempDir()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	host := func(s string) string { u, _ := url.Parse(s); return u.Host }
	conf := strings.NewReplacer("{{dir}}", dir, "{{port}}", fmt.Sprint(port),
		"{{validator}}", host(validator), "{{backend}}", host(backend)).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	return runProxy(t, cmd, fmt.Sprintf("127.0.0.1:%d", port), syscall.SIGQUIT, func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return fmt.Sprintf("%s %s", out, log)
	})
}

// A real nginx auth_request in front of an app: valid bearer and cookie
// sessions get through with the user id set by nginx (a client's own
// X-User-Id is overwritten), everything else is 401, and a revocation
// through the admin API shuts the door at once.
func TestNginxAuthRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{adminToken: adminToken})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s session=%s", r.Header.Get("X-User-Id"), r.Header.Get("X-Session-Id"))
	}))
	t.Cleanup(backend.Close)
	nginx := startNginx(t, e.srv.URL, backend.URL)

	uid := uuid.NewString()
	tok, id := e.newSession(t, uid, time.Hour)
	revoked, rid := e.newSession(t, "", time.Hour)
	e.exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, rid)
	through := "user=" + uid + " session=" + id

	cases := []struct {
		name   string
		hdr    []string
		status int
		body   string
	}{
		{"bearer", bearer(tok), 200, through},
		{"cookie", []string{"Cookie", "theme=dark; session=" + tok}, 200, through},
		{"spoofed identity header is replaced", append(bearer(tok), "X-User-Id", "attacker"), 200, through},
		{"no credentials", nil, 401, ""},
		{"unknown token", bearer("forged"), 401, ""},
		{"unknown cookie", []string{"Cookie", "session=forged"}, 401, ""},
		{"revoked", bearer(revoked), 401, ""},
		{"spoofed header without a session", []string{"X-User-Id", uid}, 401, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, nginx, "GET", "/app/orders", "", c.hdr...)
			if r.status != c.status || c.body != "" && string(r.body) != c.body {
				t.Fatalf("got %d %q, want %d %q", r.status, r.body, c.status, c.body)
			}
		})
	}

	// Served from the cache now; revoke through the admin API.
	if r := e.call(t, "DELETE", "/v1/sessions/"+id, "", bearer(adminToken)...); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := call(t, nginx, "GET", "/app/orders", "", bearer(tok)...); r.status != 401 {
		t.Fatalf("after revocation: %d %s", r.status, r.body)
	}
}
