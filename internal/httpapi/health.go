package httpapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/validation"
)

type statusBody struct {
	Status string `json:"status"`
}

// livez is GET /livez: the process is up and serving HTTP.
func (a *api) livez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

// readyz is GET /readyz: ready while Postgres answers. Redis is left out on
// purpose: without it validations still answer (from Postgres), so taking
// the validator out of rotation would turn a slowdown into an outage.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.pingDB(r.Context()); err != nil {
		a.log.Debug("not ready: postgres does not answer", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "postgres does not answer")
		return
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ready"})
}

// pingDB pings Postgres within HealthTimeout. A nil DB (handler tests
// without a database) counts as answering.
func (a *api) pingDB(ctx context.Context) error {
	if a.o.DB == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.o.HealthTimeout)
	defer cancel()
	return a.o.DB.Ping(ctx)
}

// Health statuses of the cache health document.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
)

type healthDoc struct {
	Status       string          `json:"status"`
	Timestamp    string          `json:"timestamp"`
	Redis        redisDoc        `json:"redis"`
	SessionCache sessionCacheDoc `json:"sessionCache"`
	Database     databaseDoc     `json:"database"`
	Performance  *perfDoc        `json:"performance"`
	Errors       []string        `json:"errors"`
}

type redisDoc struct {
	Connected  bool   `json:"connected"`
	Version    string `json:"version"`
	Uptime     int64  `json:"uptime"`
	UsedMemory string `json:"usedMemory"`
	TotalKeys  int64  `json:"totalKeys"`
}

type sessionCacheDoc struct {
	Enabled     bool           `json:"enabled"`
	KeyPrefix   string         `json:"keyPrefix"`
	Healthy     bool           `json:"healthy"`
	Breaker     string         `json:"breaker"`
	Metrics     cacheMetricDoc `json:"metrics"`
	Pool        poolDoc        `json:"pool"`
	Invalidator invalidatorDoc `json:"invalidator"`
}

type cacheMetricDoc struct {
	Hits          uint64  `json:"hits"`
	Misses        uint64  `json:"misses"`
	Errors        uint64  `json:"errors"`
	Total         uint64  `json:"total"`
	HitRate       float64 `json:"hitRate"`
	TTL           float64 `json:"ttl"` // seconds
	StaleBypasses uint64  `json:"staleBypasses"`
}

type poolDoc struct {
	Size      uint32 `json:"size"`
	Available uint32 `json:"available"`
	Pending   uint32 `json:"pending"`
}

type invalidatorDoc struct {
	Watermark *string `json:"watermark"`
	// WatermarkAgeSeconds is on Redis's clock (RedisTime); negative when
	// the watermark is ahead of it.
	WatermarkAgeSeconds *float64 `json:"watermarkAgeSeconds"`
	RedisTime           *string  `json:"redisTime"`
	// Source is the database the watermark vouches for; ValidatorSource
	// the one this validator reads (pg.IdentitySQL); null when unknown.
	Source              *string `json:"source"`
	ValidatorSource     *string `json:"validatorSource"`
	MaxStalenessSeconds float64 `json:"maxStalenessSeconds"`
	// Fresh: the watermark covers cache hits (or the guard is off).
	Fresh bool `json:"fresh"`
}

type databaseDoc struct {
	Connected bool `json:"connected"`
}

type perfDoc struct {
	Ping float64 `json:"ping"`
	Set  float64 `json:"set"`
	Get  float64 `json:"get"`
}

func ms(d time.Duration) float64 { return math.Round(d.Seconds()*1e6) / 1e3 }

// cacheHealth is GET /api/health/redis. It asks Redis and Postgres afresh
// (each call bounded by HealthTimeout) instead of trusting the last
// validation, so it tells the truth on an idle validator too.
//
//   - healthy: Redis answers, the breaker is closed, the cache is enabled
//     and the invalidator watermark is fresh (or the guard is off);
//   - degraded (200): validations are answered correctly but not (all) from
//     the cache: no Redis configured, cache switched off, Redis down, the
//     breaker open or half-open, or the watermark stale;
//   - unhealthy (503): Postgres does not answer, so validations that miss
//     the cache cannot be answered.
//
// errors[] names every reason for a status other than healthy.
func (a *api) cacheHealth(w http.ResponseWriter, r *http.Request) {
	now := a.o.Now()
	doc := healthDoc{Timestamp: now.UTC().Format(time.RFC3339Nano), Errors: []string{}}
	pgErr := make(chan error, 1)
	go func() { pgErr <- a.pingDB(r.Context()) }()

	svc := a.o.Service
	c := svc.Cache()
	sc := &doc.SessionCache
	sc.Enabled = svc.CacheEnabled()
	breaker := svc.BreakerState()
	sc.Breaker = breaker.String()
	st := svc.Stats()
	sc.Metrics = cacheMetricDoc{Hits: st.Hits, Misses: st.Misses, Errors: st.Errors,
		Total: st.Hits + st.Misses, StaleBypasses: st.StaleBypasses}
	if sc.Metrics.Total > 0 {
		sc.Metrics.HitRate = math.Round(float64(st.Hits)/float64(sc.Metrics.Total)*1e4) / 1e4
	}
	maxStale := svc.MaxStaleness()
	inv := &sc.Invalidator
	inv.MaxStalenessSeconds = maxStale.Seconds()

	var (
		wm       cache.Watermark
		redisNow time.Time
		wmRead   bool
	)
	switch {
	case c == nil:
		doc.Errors = append(doc.Errors, "no cache configured (REDIS_URL is empty): database-only mode")
	default:
		sc.KeyPrefix = c.Prefix()
		sc.Metrics.TTL = c.TTL().Seconds()
		ps := c.PoolStats()
		sc.Pool = poolDoc{Size: ps.Total, Available: ps.Idle, Pending: ps.Pending}
		ctx, cancel := context.WithTimeout(r.Context(), a.o.HealthTimeout)
		p, err := c.Probe(ctx)
		cancel()
		if err != nil {
			doc.Errors = append(doc.Errors, errString("redis does not answer", err))
			break
		}
		doc.Redis.Connected = true
		doc.Performance = &perfDoc{Ping: ms(p.Ping), Set: ms(p.Set), Get: ms(p.Get)}
		ctx, cancel = context.WithTimeout(r.Context(), a.o.HealthTimeout)
		defer cancel()
		if info, err := c.Info(ctx); err != nil {
			doc.Errors = append(doc.Errors, errString("redis info", err))
		} else {
			doc.Redis.Version, doc.Redis.Uptime = info.Version, info.UptimeSecs
			doc.Redis.UsedMemory, doc.Redis.TotalKeys = info.UsedMemory, info.TotalKeys
		}
		// The watermark's age is measured on Redis's clock, as validations
		// measure it, never on this host's.
		if wm, err = c.Watermark(ctx); err != nil {
			doc.Errors = append(doc.Errors, errString("read invalidator watermark", err))
		} else if redisNow, err = c.Time(ctx); err != nil {
			doc.Errors = append(doc.Errors, errString("read redis TIME", err))
		} else {
			wmRead = true
		}
	}
	own := svc.OwnIdentity()
	inv.ValidatorSource = nonEmpty(own)
	if wmRead {
		inv.RedisTime = nonEmpty(redisNow.UTC().Format(time.RFC3339Nano))
		if !wm.IsZero() {
			age := math.Round(redisNow.Sub(wm.At).Seconds()*1e3) / 1e3
			inv.Watermark = nonEmpty(wm.At.UTC().Format(time.RFC3339Nano))
			inv.WatermarkAgeSeconds, inv.Source = &age, nonEmpty(wm.Source)
		}
	}
	distrust := validation.DistrustNoWatermark
	if wmRead {
		distrust = svc.Distrust(wm, redisNow)
	}
	inv.Fresh = maxStale == 0 || distrust == ""

	if c != nil && !svc.CacheEnabled() {
		doc.Errors = append(doc.Errors, "cache switched off (SESSION_CACHE_ENABLED=false): every validation goes to postgres")
	}
	if c != nil && breaker != validation.BreakerClosed {
		doc.Errors = append(doc.Errors, fmt.Sprintf("redis circuit breaker is %s: validations go to postgres", breaker))
	}
	if c != nil && wmRead && !inv.Fresh {
		doc.Errors = append(doc.Errors, watermarkError(distrust, c.Prefix(), wm, own, redisNow, maxStale))
	}
	sc.Healthy = sc.Enabled && doc.Redis.Connected && breaker == validation.BreakerClosed && inv.Fresh

	status, code := StatusHealthy, http.StatusOK
	if !sc.Healthy {
		status = StatusDegraded
	}
	if err := <-pgErr; err != nil {
		doc.Errors = append(doc.Errors, errString("postgres does not answer", err))
		status, code = StatusUnhealthy, http.StatusServiceUnavailable
	} else {
		doc.Database.Connected = true
	}
	doc.Status = status
	writeJSON(w, code, doc)
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// watermarkError says why the watermark covers no cache hit, and what to do.
func watermarkError(reason, prefix string, wm cache.Watermark, own string, redisNow time.Time, maxStale time.Duration) string {
	const consequence = "cache hits are checked against postgres"
	switch reason {
	case validation.DistrustNoWatermark:
		return fmt.Sprintf("no invalidator watermark in redis under prefix %q (is the invalidator running, with the same REDIS_KEY_PREFIX?): %s", prefix, consequence)
	case validation.DistrustUnknownIdentity:
		return "this validator does not know its database identity yet (postgres unreachable, or no sessions table): " + consequence
	case validation.DistrustSourceMismatch:
		if wm.Source == "" {
			return fmt.Sprintf("the watermark in redis under prefix %q names no source database (written by an older invalidator?): %s; upgrade the invalidator", prefix, consequence)
		}
		if validation.IsStandbyIdentity(own) {
			return fmt.Sprintf("this validator reads a standby (%s) while the invalidator follows the primary: a standby lags, so the cache is never trusted or filled; "+
				"point DATABASE_URL at the primary (%s)", own, consequence)
		}
		return fmt.Sprintf("the watermark in redis under prefix %q vouches for database %s, this validator reads %s: another deployment shares this redis and key prefix, "+
			"or the invalidator points at another database; give each deployment its own REDIS_KEY_PREFIX (%s)", prefix, wm.Source, own, consequence)
	case validation.DistrustFuture:
		return fmt.Sprintf("the watermark in redis under prefix %q is %.1fs ahead of redis's clock (TIME), so it is never trusted: something other than the invalidator wrote it, "+
			"or redis's clock went back; %s", prefix, wm.At.Sub(redisNow).Seconds(), consequence)
	}
	return fmt.Sprintf("invalidator watermark is %.1fs old on redis's clock, more than MAX_STALENESS %s: %s",
		redisNow.Sub(wm.At).Seconds(), maxStale, consequence)
}
