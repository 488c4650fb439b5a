// Package httpapi is the validator's HTTP API: token validation, forward
// auth for reverse proxies, the admin endpoints, health and metrics. It
// turns HTTP into calls on validation.Service and validation.Admin and
// nothing more; the rules of validity live there.
//
// Every error body is JSON {"error":"<code>","message":"<text>"}. No token,
// Authorization header or Cookie header is ever logged.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// Pinger is what readiness needs of Postgres.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Options configure the API.
type Options struct {
	Service       *validation.Service
	Admin         *validation.Admin
	DB            Pinger // Postgres, for /readyz and health
	AdminToken    string // empty: admin endpoints answer 404
	SessionCookie string // cookie read by /v1/auth; "session" when empty
	// UUIDIDs: session and user ids are UUIDs (checked before Postgres is
	// asked); otherwise any 1-255 visible ASCII characters.
	UUIDIDs bool
	// MaxTokenLen caps a presented token (default session.MaxTokenLen;
	// source.MaxJWTLen for JWTs).
	MaxTokenLen int
	// SupabaseCookie: /v1/auth also reads the access token out of Supabase's
	// SSR session cookie; SupabaseCookieName names it, or when empty the one
	// sb-<ref>-auth-token cookie a request carries is read.
	SupabaseCookie     bool
	SupabaseCookieName string
	Logger             *zap.Logger
	Gatherer           prometheus.Gatherer // served at /metrics; nil: 404
	// Registerer receives the HTTP metrics; nil registers none.
	Registerer prometheus.Registerer
	// HealthTimeout bounds each dependency check of /readyz and
	// /api/health/redis (default 1s).
	HealthTimeout time.Duration
	// Now is the clock of the health document (default time.Now).
	Now func() time.Time
}

type api struct {
	o      Options
	log    *zap.Logger
	mux    *http.ServeMux
	m      *httpMetrics
	admin  [32]byte // SHA-256 of the admin token
	hasAdm bool
	// routes are the registered patterns: the only values of the route
	// label (the mux also reports cleaned paths of its redirects as
	// patterns, which must not become labels).
	routes map[string]bool
}

// New returns the API's handler with its middleware: panic recovery, the
// body cap, metrics and debug request logging.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.SessionCookie == "" {
		o.SessionCookie = "session"
	}
	if o.MaxTokenLen <= 0 {
		o.MaxTokenLen = session.MaxTokenLen
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &api{o: o, log: o.Logger, mux: http.NewServeMux(), m: newHTTPMetrics(o.Registerer), routes: map[string]bool{}}
	if o.AdminToken != "" {
		a.admin, a.hasAdm = hashSecret(o.AdminToken), true
	}

	handle := func(pattern string, h http.HandlerFunc) {
		a.routes[pattern] = true
		a.mux.HandleFunc(pattern, h)
	}
	handle("POST /v1/sessions/validate", a.validate)
	// Forward auth (/v1/auth and its subtree) is routed in serve, before
	// the mux: see forwardAuthRoute.
	if a.hasAdm && o.Admin != nil {
		// Registered only when enabled: a disabled admin API answers 404
		// to every method, not a 405 that would reveal its routes.
		if o.Admin.CanCreate() {
			handle("POST /v1/sessions", a.adminOnly(a.createSession))
		} else {
			// Every method: the source's auth server creates its sessions.
			handle("/v1/sessions", a.adminOnly(a.noCreate))
		}
		handle("DELETE /v1/sessions/{id}", a.adminOnly(a.revokeSession))
		if o.Admin.CanRevokeUsers() {
			handle("DELETE /v1/users/{user_id}/sessions", a.adminOnly(a.revokeUser))
		} else {
			handle("/v1/users/{user_id}/sessions", a.adminOnly(a.noUsers))
		}
	}
	handle("GET /livez", a.livez)
	handle("GET /readyz", a.readyz)
	handle("GET /api/health/redis", a.cacheHealth)
	if o.Gatherer != nil {
		handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
			ErrorLog: zap.NewStdLog(a.log), ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP)
	}
	return http.HandlerFunc(a.serve)
}

// serve is the outermost layer: it measures and logs every request, and
// recovers from panics below it.
func (a *api) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	route := "unmatched"
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // the handler asked net/http to drop the connection
			}
			a.log.Error("panic while serving a request",
				zap.String("route", route), zap.String("method", r.Method),
				zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			if !rw.wrote {
				writeError(rw, http.StatusInternalServerError, "internal", "internal error")
			}
		}
		d := time.Since(start)
		a.m.observe(route, rw.code(), d)
		if ce := a.log.Check(zapcore.DebugLevel, "request"); ce != nil {
			// Route pattern, not the raw path: a path or query may carry a
			// token (Envoy forwards the original path to /v1/auth/...).
			ce.Write(zap.String("route", route), zap.String("method", r.Method),
				zap.Int("status", rw.code()), zap.Duration("duration", d),
				zap.Int64("bytes", rw.n))
		}
	}()
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)

	if fa := forwardAuthRoute(r.URL.Path); fa != "" {
		route = fa
		a.forwardAuth(rw, r)
		return
	}
	if r.Method != http.MethodConnect && r.URL.Path != cleanPath(r.URL.Path) {
		// The mux would answer with a redirect to the cleaned path.
		writeError(rw, http.StatusNotFound, "not_found", "no such endpoint")
		return
	}
	h, pattern := a.mux.Handler(r)
	if !a.routes[pattern] {
		a.noRoute(rw, r, h)
		return
	}
	route = pattern
	a.mux.ServeHTTP(rw, r)
}

// forwardAuthRoute returns the route label of a forward-auth path ("" for
// any other path). Forward auth answers any method (Envoy's ext_authz
// forwards the original request's method) and any path under /v1/auth/
// exactly as sent: Envoy appends the client's original path to its
// path_prefix, and that path may hold "//", "." or ".." segments, which the
// mux would answer with a path-cleaning redirect instead of a verdict.
func forwardAuthRoute(path string) string {
	switch {
	case path == "/v1/auth":
		return "/v1/auth"
	case strings.HasPrefix(path, "/v1/auth/"):
		return "/v1/auth/"
	}
	return ""
}

// cleanPath is the canonical form of a path as http.ServeMux sees it: no
// "//", "." or ".." segments, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// noRoute turns the mux's plain-text 404 and 405 into JSON, keeping the
// Allow header of a 405. Anything else the mux would answer (a
// path-cleaning redirect, text/html) is a JSON 404: no API client follows
// such redirects, and a proxy asking for a verdict must get JSON.
func (a *api) noRoute(w http.ResponseWriter, r *http.Request, h http.Handler) {
	probe := &headerProbe{h: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.status {
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	case http.StatusMethodNotAllowed:
		if allow := probe.h.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed for this endpoint")
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	}
}

// headerProbe records what a handler would answer, discarding the body.
type headerProbe struct {
	h      http.Header
	status int
}

func (p *headerProbe) Header() http.Header { return p.h }
func (p *headerProbe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *headerProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) code() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// readBody reads the (already capped) request body.
func readBody(r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > MaxBodyBytes {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, badRequest("could not read the request body")
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; they always marshal.
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"could not encode the response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: code, Message: msg})
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeError(w, e.Status, e.Code, e.Message)
}

// httpMetrics are the API's request metrics. A nil *httpMetrics records
// nothing.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	if reg == nil {
		return nil
	}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionguard_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessionguard_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observe records one request. route is a registered pattern or
// "unmatched", so the label set stays bounded whatever clients send.
func (m *httpMetrics) observe(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// errString keeps dependency errors short in health documents.
func errString(what string, err error) string { return fmt.Sprintf("%s: %v", what, err) }
