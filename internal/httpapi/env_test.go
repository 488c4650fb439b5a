package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{}) // dial failures are expected in the outage tests
	testenv.Main(m)
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

const adminToken = "test-admin-token-0123456789"

// envOpts describe one test world.
type envOpts struct {
	noRedis       bool          // database-only mode
	cacheOff      bool          // SESSION_CACHE_ENABLED=false
	maxStaleness  time.Duration // 0: guard off (there is no invalidator in these tests)
	breaker       validation.BreakerOptions
	adminToken    string
	sessionCookie string
	dbURL         string // default: a fresh database on the shared server
	logger        *zap.Logger
}

// env is a validator API over real Postgres and Redis, served by httptest.
type env struct {
	pool  *pgxpool.Pool
	redis *testenv.Redis // nil in database-only mode
	cache *cache.Cache
	svc   *validation.Service
	reg   *prometheus.Registry
	srv   *httptest.Server
	// identity is the database's pg.IdentitySQL, which the validator knows.
	identity string
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if o.dbURL == "" {
		o.dbURL = testenv.DB(t)
	}
	pool := testenv.Pool(t, o.dbURL)
	e := &env{pool: pool, reg: prometheus.NewRegistry()}
	if !o.noRedis {
		e.redis = testenv.NewRedis(t)
		e.cache = cache.New(testenv.RedisClient(t, e.redis), cache.Options{StartsNamespace: o.maxStaleness == 0})
	}
	store := pg.NewStore(pool, testenv.OwnTable())
	watch := validation.NewIdentityWatch(store, nil, 0)
	if err := watch.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.identity = watch.Current()
	e.svc = validation.New(store, validation.Options{
		Cache: e.cache, CacheEnabled: !o.cacheOff, MaxStaleness: o.maxStaleness, Identity: watch,
		RedisTimeout: 300 * time.Millisecond, Breaker: o.breaker,
		Metrics: validation.NewMetrics(e.reg), Logger: o.logger,
	})
	h := httpapi.New(httpapi.Options{
		Service: e.svc, Admin: validation.NewAdmin(store, e.cache, validation.AdminOptions{RedisTimeout: 300 * time.Millisecond}), DB: store,
		AdminToken: o.adminToken, SessionCookie: o.sessionCookie, UUIDIDs: true, Logger: o.logger,
		Gatherer: e.reg, Registerer: e.reg, HealthTimeout: 500 * time.Millisecond,
	})
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// newSession inserts a session with plain SQL, as any database writer would.
func (e *env) newSession(t testing.TB, userID string, expiresIn time.Duration) (token, id string) {
	t.Helper()
	return testenv.InsertSession(t, e.pool, userID, expiresIn)
}

func (e *env) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// response is what a test looks at.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// noRedirects shows a test the API's redirects instead of following them
// (the API must answer none).
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// call sends one request; hdr holds header pairs ("Authorization", "...").
func call(t testing.TB, base, method, path string, body string, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) call(t testing.TB, method, path, body string, hdr ...string) response {
	t.Helper()
	return call(t, e.srv.URL, method, path, body, hdr...)
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func (e *env) validate(t testing.TB, token string) response {
	t.Helper()
	return e.call(t, "POST", "/v1/sessions/validate", "", bearer(token)...)
}

// wantJSONError checks a JSON error response.
func wantJSONError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if got := r.json(t)["error"]; got != code {
		t.Fatalf("error %v, want %q; body %s", got, code, r.body)
	}
}

// wantValid checks a 200 validation answer and returns its session.
func wantValid(t testing.TB, r response, source string) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.status, r.body)
	}
	m := r.json(t)
	if m["valid"] != true || m["source"] != source {
		t.Fatalf("body %s, want valid from %s", r.body, source)
	}
	s, _ := m["session"].(map[string]any)
	for _, k := range []string{"id", "user_id", "created_at", "expires_at"} {
		if _, ok := s[k].(string); !ok {
			t.Fatalf("session lacks %s: %s", k, r.body)
		}
	}
	return s
}

const invalidBody = `{"valid":false,"error":"invalid_token"}` + "\n"

func wantInvalid(t testing.TB, r response) {
	t.Helper()
	if r.status != http.StatusUnauthorized || string(r.body) != invalidBody {
		t.Fatalf("got %d %q, want 401 %q", r.status, r.body, invalidBody)
	}
}

// setWatermark writes a watermark at age before Redis's clock (negative:
// ahead of it) vouching for source, as the invalidator would.
func (e *env) setWatermark(t testing.TB, age time.Duration, source string) {
	t.Helper()
	ctx := context.Background()
	now, err := e.cache.Time(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cache.SetWatermark(ctx, cache.Watermark{At: now.Add(-age), Source: source}); err != nil {
		t.Fatal(err)
	}
}

// health fetches the cache health document.
func (e *env) health(t testing.TB) (int, healthDoc) {
	t.Helper()
	r := e.call(t, "GET", "/api/health/redis", "")
	var d healthDoc
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatalf("health body %q: %v", r.body, err)
	}
	return r.status, d
}

type healthDoc struct {
	Status    string `json:"status"`
	Timestamp string `json:"timestamp"`
	Redis     struct {
		Connected  bool   `json:"connected"`
		Version    string `json:"version"`
		Uptime     int64  `json:"uptime"`
		UsedMemory string `json:"usedMemory"`
		TotalKeys  int64  `json:"totalKeys"`
	} `json:"redis"`
	SessionCache struct {
		Enabled bool   `json:"enabled"`
		Healthy bool   `json:"healthy"`
		Breaker string `json:"breaker"`
		Metrics struct {
			Hits    uint64  `json:"hits"`
			Misses  uint64  `json:"misses"`
			Errors  uint64  `json:"errors"`
			Total   uint64  `json:"total"`
			HitRate float64 `json:"hitRate"`
			TTL     float64 `json:"ttl"`
		} `json:"metrics"`
		Pool struct {
			Size      *uint32 `json:"size"`
			Available *uint32 `json:"available"`
			Pending   *uint32 `json:"pending"`
		} `json:"pool"`
		KeyPrefix   string `json:"keyPrefix"`
		Invalidator struct {
			Watermark           *string  `json:"watermark"`
			WatermarkAgeSeconds *float64 `json:"watermarkAgeSeconds"`
			RedisTime           *string  `json:"redisTime"`
			Source              *string  `json:"source"`
			ValidatorSource     *string  `json:"validatorSource"`
			Fresh               bool     `json:"fresh"`
		} `json:"invalidator"`
	} `json:"sessionCache"`
	Database struct {
		Connected bool `json:"connected"`
	} `json:"database"`
	Performance *struct {
		Ping *float64 `json:"ping"`
		Set  *float64 `json:"set"`
		Get  *float64 `json:"get"`
	} `json:"performance"`
	Errors []string `json:"errors"`
}
