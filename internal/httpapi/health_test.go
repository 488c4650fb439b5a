package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

func TestCacheHealth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		o         envOpts
		watermark time.Duration // age of the watermark to write; <0 none
		status    string
		fresh     bool
		connected bool
		errorHint string
	}{
		{"fresh watermark", envOpts{maxStaleness: 2 * time.Second}, 0, "healthy", true, true, ""},
		{"guard off, no watermark", envOpts{}, -1, "healthy", true, true, ""},
		{"stale watermark", envOpts{maxStaleness: 2 * time.Second}, 10 * time.Second, "degraded", false, true, "watermark is 10"},
		{"no watermark", envOpts{maxStaleness: 2 * time.Second}, -1, "degraded", false, true, "no invalidator watermark"},
		{"cache switched off", envOpts{cacheOff: true}, -1, "degraded", true, true, "SESSION_CACHE_ENABLED=false"},
		{"database-only", envOpts{noRedis: true}, -1, "degraded", true, false, "database-only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, c.o)
			if c.watermark >= 0 {
				e.setWatermark(t, c.watermark, e.identity)
			}
			tok, _ := e.newSession(t, "", time.Hour)
			e.validate(t, tok)
			e.validate(t, tok)
			code, d := e.health(t)
			if d.Status != c.status || code != 200 {
				t.Fatalf("status %s (%d), want %s (200); errors %v", d.Status, code, c.status, d.Errors)
			}
			if _, err := time.Parse(time.RFC3339, d.Timestamp); err != nil {
				t.Fatalf("timestamp %q: %v", d.Timestamp, err)
			}
			sc := d.SessionCache
			if sc.Healthy != (c.status == "healthy") || sc.Invalidator.Fresh != c.fresh || d.Redis.Connected != c.connected {
				t.Fatalf("healthy=%v fresh=%v connected=%v; want %v %v %v", sc.Healthy, sc.Invalidator.Fresh,
					d.Redis.Connected, c.status == "healthy", c.fresh, c.connected)
			}
			if !d.Database.Connected || sc.Breaker != "closed" {
				t.Fatalf("database %v breaker %s", d.Database.Connected, sc.Breaker)
			}
			if c.errorHint == "" && len(d.Errors) != 0 || c.errorHint != "" && !strings.Contains(strings.Join(d.Errors, "|"), c.errorHint) {
				t.Fatalf("errors %q, want a mention of %q", d.Errors, c.errorHint)
			}
			if sc.Pool.Size == nil || sc.Pool.Available == nil || sc.Pool.Pending == nil {
				t.Fatal("pool figures missing")
			}
			if !c.connected {
				if d.Performance != nil || sc.Enabled {
					t.Fatalf("database-only: performance %v enabled %v", d.Performance, sc.Enabled)
				}
				return
			}
			if d.Performance == nil || d.Performance.Ping == nil || *d.Performance.Get <= 0 {
				t.Fatalf("performance %+v", d.Performance)
			}
			if !strings.Contains(d.Redis.Version, ".") || d.Redis.UsedMemory == "" || d.Redis.TotalKeys < 1 || sc.Metrics.TTL != 300 {
				t.Fatalf("redis %+v ttl %v", d.Redis, sc.Metrics.TTL)
			}
			if c.watermark >= 0 {
				age := sc.Invalidator.WatermarkAgeSeconds
				if age == nil || *age < c.watermark.Seconds()-0.5 || *age > c.watermark.Seconds()+2 {
					t.Fatalf("watermarkAgeSeconds %v, want about %v", age, c.watermark.Seconds())
				}
			}
			wantHits := uint64(1)
			if c.o.cacheOff || c.o.maxStaleness > 0 && c.watermark != 0 {
				wantHits = 0 // switched off, or hits bypassed for staleness
			}
			if m := sc.Metrics; m.Hits != wantHits || m.Total != m.Hits+m.Misses {
				t.Fatalf("metrics %+v, want %d hits", m, wantHits)
			}
		})
	}
}

// Redis dies mid-run: validations keep answering from Postgres, the breaker
// opens, health says degraded, readiness holds. Redis comes back: after the
// breaker's open timeout the cache serves again.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{breaker: validation.BreakerOptions{
		MinRequests: 3, FailureRatio: 0.5, Window: 10 * time.Second, OpenTimeout: time.Second, HalfOpenMax: 1,
	}})
	tok, _ := e.newSession(t, uuid.NewString(), time.Hour)
	wantValid(t, e.validate(t, tok), "database")
	wantValid(t, e.validate(t, tok), "cache")
	if _, d := e.health(t); d.Status != "healthy" {
		t.Fatalf("before the outage: %s %v", d.Status, d.Errors)
	}

	if err := e.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		wantValid(t, e.validate(t, tok), "database")
	}
	wantInvalid(t, e.validate(t, "unknown-during-outage"))
	code, d := e.health(t)
	if code != 200 || d.Status != "degraded" || d.Redis.Connected || d.SessionCache.Breaker == "closed" {
		t.Fatalf("during the outage: %d %s connected=%v breaker=%s", code, d.Status, d.Redis.Connected, d.SessionCache.Breaker)
	}
	if d.SessionCache.Metrics.Errors == 0 {
		t.Fatal("no cache errors counted during the outage")
	}
	if r := e.call(t, "GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("readyz during a redis outage: %d", r.status)
	}
	if e.svc.BreakerState().String() == "closed" {
		t.Fatal("breaker still closed after 6 failed lookups")
	}

	if err := e.redis.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "cache hits resume", func() bool {
		r := e.validate(t, tok)
		return r.status == 200 && r.json(t)["source"] == "cache"
	})
	if _, d := e.health(t); d.Status != "healthy" || d.SessionCache.Breaker != "closed" {
		t.Fatalf("after recovery: %s breaker %s %v", d.Status, d.SessionCache.Breaker, d.Errors)
	}
}

// Postgres down: what the cache cannot answer is 503 "unavailable", and the
// validator is not ready; when Postgres is back, it is.
func TestPostgresDown(t *testing.T) {
	t.Parallel()
	p, url := testenv.NewPostgres(t)
	e := newEnv(t, envOpts{dbURL: url})
	tok, _ := e.newSession(t, "", time.Hour)
	wantValid(t, e.validate(t, tok), "database")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	r := e.validate(t, "not-in-the-cache")
	if r.status != 503 || string(r.body) != `{"error":"unavailable","message":"the validity of the token cannot be determined right now"}`+"\n" {
		t.Fatalf("validate with postgres down: %d %s", r.status, r.body)
	}
	if r := e.call(t, "GET", "/v1/auth", "", bearer("not-in-the-cache")...); r.status != 503 {
		t.Fatalf("forward auth with postgres down: %d", r.status)
	}
	// A cached answer still stands (guard off): the cache's own rules.
	wantValid(t, e.validate(t, tok), "cache")
	wantJSONError(t, e.call(t, "GET", "/readyz", ""), 503, "unavailable")
	code, d := e.health(t)
	if code != 503 || d.Status != "unhealthy" || d.Database.Connected || !d.Redis.Connected {
		t.Fatalf("health: %d %s db=%v redis=%v", code, d.Status, d.Database.Connected, d.Redis.Connected)
	}

	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "ready again", func() bool {
		return e.call(t, "GET", "/readyz", "").status == 200
	})
	wantInvalid(t, e.validate(t, "not-in-the-cache"))
}

// TestCacheHealthWatermarkSource: /api/health/redis shows whose watermark
// Redis holds and which database this validator reads, and says what is
// wrong when they differ or when the watermark is ahead of Redis's clock.
func TestCacheHealthWatermarkSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{maxStaleness: 2 * time.Second})
	other := "7000000000000000001/16384/16385"
	cases := []struct {
		name   string
		age    time.Duration
		source string
		fresh  bool
		want   []string
	}{
		{"our own, fresh", 0, e.identity, true, nil},
		{"another database", 0, other, false, []string{
			`the watermark in redis under prefix "sg" vouches for database ` + other + `, this validator reads ` + e.identity,
			"another deployment shares this redis and key prefix", "give each deployment its own REDIS_KEY_PREFIX"}},
		{"no source", 0, "", false, []string{"names no source database"}},
		{"ahead of redis's clock", -time.Hour, e.identity, false, []string{"is 3600.0s ahead of redis's clock"}},
	}
	for _, c := range cases {
		e.setWatermark(t, c.age, c.source)
		code, d := e.health(t)
		inv := d.SessionCache.Invalidator
		if code != 200 || inv.Fresh != c.fresh || (d.Status == "healthy") != c.fresh || d.SessionCache.KeyPrefix != "sg" {
			t.Fatalf("%s: %d %s fresh=%v prefix=%q errors %q", c.name, code, d.Status, inv.Fresh, d.SessionCache.KeyPrefix, d.Errors)
		}
		if inv.ValidatorSource == nil || *inv.ValidatorSource != e.identity {
			t.Fatalf("%s: validatorSource %v, want %s", c.name, inv.ValidatorSource, e.identity)
		}
		if c.source == "" && inv.Source != nil || c.source != "" && (inv.Source == nil || *inv.Source != c.source) {
			t.Fatalf("%s: source %v, want %q", c.name, inv.Source, c.source)
		}
		age := inv.WatermarkAgeSeconds
		if age == nil || inv.RedisTime == nil || *age < c.age.Seconds()-0.5 || *age > c.age.Seconds()+2 {
			t.Fatalf("%s: age %v (redis time %v), want about %v on redis's clock", c.name, age, inv.RedisTime, c.age.Seconds())
		}
		all := strings.Join(d.Errors, "|")
		if len(c.want) == 0 && len(d.Errors) != 0 {
			t.Fatalf("%s: errors %q, want none", c.name, d.Errors)
		}
		for _, w := range c.want {
			if !strings.Contains(all, w) {
				t.Fatalf("%s: errors %q lack %q", c.name, d.Errors, w)
			}
		}
	}
}
