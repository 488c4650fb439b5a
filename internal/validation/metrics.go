package validation

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics are the validator's Prometheus collectors. A nil *Metrics records
// nothing.
type Metrics struct {
	validations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	hits        prometheus.Counter
	misses      prometheus.Counter
	errors      *prometheus.CounterVec
	fills       *prometheus.CounterVec
	stale       *prometheus.CounterVec
	breaker     prometheus.Gauge
	nearHits    prometheus.Counter
	nearResets  *prometheus.CounterVec
	reg         prometheus.Registerer
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionguard_validations_total",
			Help: "Token validations by result (valid, invalid, unavailable) and source (cache, database, token: refused or accepted on the token alone).",
		}, []string{"result", "source"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessionguard_validation_duration_seconds",
			Help:    "Time to answer a validation, by source.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionguard_cache_hits_total", Help: "Validations answered from the Redis cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionguard_cache_misses_total", Help: "Cache lookups that found no entry.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionguard_cache_errors_total",
			Help: "Redis calls that failed or were refused by the open circuit breaker, by operation and reason.",
		}, []string{"op", "reason"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionguard_cache_fills_total",
			Help: "Cache fills after a miss: stored, refused (lease voided by a concurrent invalidation), not_ours (the watermark does not vouch for this validator's database) or error.",
		}, []string{"outcome"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionguard_cache_stale_bypass_total",
			Help: "Cache hits not served because no watermark covered them, by reason: stale (older than MAX_STALENESS on Redis's clock), " +
				"future (ahead of Redis's clock), source_mismatch (vouches for another database), unknown_identity (this validator's own is unknown), no_watermark.",
		}, []string{"reason"}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionguard_cache_breaker_state",
			Help: "Redis circuit breaker state: 0 closed, 1 half-open, 2 open.",
		}),
		nearHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionguard_near_cache_hits_total",
			Help: "Validations answered from the in-process near cache, without Redis (also counted in sessionguard_validations_total{source=\"cache\"}).",
		}),
		nearResets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionguard_near_cache_resets_total",
			Help: "Times the near cache was emptied, by reason: subscribed (a new subscription to a notice channel: one per cache shard, 16 on a Redis Cluster), disconnected, gap (a notice was missed), bad_notice.",
		}, []string{"reason"}),
		reg: reg,
	}
	reg.MustRegister(m.validations, m.duration, m.hits, m.misses, m.errors, m.fills, m.stale, m.breaker, m.nearHits, m.nearResets)
	for _, r := range []string{"subscribed", "disconnected", "gap", "bad_notice"} {
		m.nearResets.WithLabelValues(r)
	}
	for _, o := range []string{"stored", "refused", "not_ours", "error"} {
		m.fills.WithLabelValues(o)
	}
	for _, r := range []string{DistrustStale, DistrustFuture, DistrustSourceMismatch, DistrustUnknownIdentity, DistrustNoWatermark} {
		m.stale.WithLabelValues(r)
	}
	// The other label values that can occur exist from the start too, at 0,
	// so that rates, alerts and dashboard panels find their series.
	for _, src := range []Source{SourceCache, SourceDatabase, SourceToken} {
		m.validations.WithLabelValues("valid", string(src))
		m.validations.WithLabelValues("invalid", string(src))
		m.duration.WithLabelValues(string(src))
	}
	m.validations.WithLabelValues("unavailable", string(SourceDatabase))
	for _, op := range []string{"lookup", "fill"} {
		for _, reason := range []string{"error", "timeout", "breaker_open"} {
			m.errors.WithLabelValues(op, reason)
		}
	}
	return m
}

func (m *Metrics) validation(result, source string, d time.Duration) {
	if m == nil {
		return
	}
	m.validations.WithLabelValues(result, source).Inc()
	m.duration.WithLabelValues(source).Observe(d.Seconds())
}

func (m *Metrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *Metrics) miss() {
	if m != nil {
		m.misses.Inc()
	}
}

func (m *Metrics) staleBypass(reason string) {
	if m != nil {
		m.stale.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) fill(outcome string) {
	if m != nil {
		m.fills.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) cacheError(op string, err error) {
	if m == nil {
		return
	}
	reason := "error"
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		reason = "breaker_open"
	case isTimeout(err):
		reason = "timeout"
	}
	m.errors.WithLabelValues(op, reason).Inc()
}

func (m *Metrics) setBreaker(s gobreaker.State) {
	if m == nil {
		return
	}
	v := 0.0
	switch s {
	case gobreaker.StateHalfOpen:
		v = 1
	case gobreaker.StateOpen:
		v = 2
	}
	m.breaker.Set(v)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (m *Metrics) nearHit() {
	if m != nil {
		m.nearHits.Inc()
	}
}

func (m *Metrics) nearReset(reason string) {
	if m != nil {
		m.nearResets.WithLabelValues(reason).Inc()
	}
}

// nearSize exports the near cache's entry count (once per Metrics).
func (m *Metrics) nearSize(f func() float64) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessionguard_near_cache_entries",
			Help: "Entries in the in-process near cache (an estimate).",
		}, f))
	}
}
