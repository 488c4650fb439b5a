package cdc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumer's Prometheus metrics, all prefixed
// sessionguard_invalidator_. A nil *Metrics records nothing.
type Metrics struct {
	events       *prometheus.CounterVec
	applyLatency prometheus.Histogram
	sourceOK     prometheus.Gauge
	foreign      prometheus.Counter
	reconnects   prometheus.Counter
	slotLost     prometheus.Counter
	streaming    prometheus.Gauge
	role         *prometheus.GaugeVec
	decodeErrors prometheus.Counter
	redisErrors  prometheus.Counter
	flushes      *prometheus.CounterVec
}

// NewMetrics registers the consumer's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "sessionguard_invalidator"
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "events_total",
			Help: "Row changes of the sessions table applied to Redis, by operation."}, []string{"op"}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "apply_seconds",
			Help:    "Time to apply one batch of effects to Redis (including retries).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		sourceOK: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "source_ok",
			Help: "1 while the last source check passed (sessions fully published with a replica identity that names entries); 0 stops the watermark."}),
		foreign: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "foreign_heartbeats_total",
			Help: "Messages with the heartbeat prefix that this process did not sign (ignored)."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "reconnects_total",
			Help: "Replication sessions that ended in an error (of the replication connection or of the leader lock's) and were retried."}),
		slotLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "slot_lost_total",
			Help: "Times the replication slot was found dropped or invalidated (the cache was flushed)."}),
		streaming: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "streaming",
			Help: "1 while this process streams from its slot."}),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "role",
			Help: "1 for the current role of this process (active or standby)."}, []string{"role"}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "decode_errors_total",
			Help: "Replication messages that could not be decoded (each undecodable change flushed the cache)."}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "redis_errors_total",
			Help: "Failed Redis calls (each is retried; nothing is acknowledged meanwhile)."}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cache_flushes_total",
			Help: "Whole-cache flushes, by reason (truncate, undecodable, slot_created, flush_pending, redis_restart, source_changed, catalog_changed, generation_lost, recheck, recheck_other)."}, []string{"reason"}),
	}
	reg.MustRegister(m.events, m.applyLatency, m.sourceOK, m.foreign, m.reconnects, m.slotLost,
		m.streaming, m.role, m.decodeErrors, m.redisErrors, m.flushes)
	// Every label value exists from the start, at 0, so that a rate or an
	// increase sees the first event, and an alert or a dashboard panel
	// finds its series before anything happened.
	for _, op := range []RowOp{OpInsert, OpUpdate, OpDelete} {
		m.events.WithLabelValues(string(op))
	}
	for _, r := range FlushReasons {
		m.flushes.WithLabelValues(r)
	}
	for _, r := range []Role{RoleActive, RoleStandby} {
		m.role.WithLabelValues(string(r))
	}
	return m
}

// FlushReasons are the values of cache_flushes_total's reason label.
var FlushReasons = []string{"truncate", "undecodable", "slot_created", "flush_pending", "redis_restart",
	"source_changed", "catalog_changed", "generation_lost", "recheck", "recheck_other"}

func (m *Metrics) event(op RowOp, n int) {
	if m != nil && n > 0 {
		m.events.WithLabelValues(string(op)).Add(float64(n))
	}
}

func (m *Metrics) applied(d time.Duration) {
	if m != nil {
		m.applyLatency.Observe(d.Seconds())
	}
}

func (m *Metrics) setSourceOK(ok bool) {
	if m != nil {
		v := 0.0
		if ok {
			v = 1
		}
		m.sourceOK.Set(v)
	}
}

func (m *Metrics) foreignHeartbeat() {
	if m != nil {
		m.foreign.Inc()
	}
}

func (m *Metrics) reconnect() {
	if m != nil {
		m.reconnects.Inc()
	}
}

func (m *Metrics) lostSlot() {
	if m != nil {
		m.slotLost.Inc()
	}
}

func (m *Metrics) setStreaming(on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.streaming.Set(v)
	}
}

func (m *Metrics) setRole(r Role) {
	if m != nil {
		for _, x := range []Role{RoleActive, RoleStandby} {
			v := 0.0
			if x == r {
				v = 1
			}
			m.role.WithLabelValues(string(x)).Set(v)
		}
	}
}

func (m *Metrics) decodeError() {
	if m != nil {
		m.decodeErrors.Inc()
	}
}

func (m *Metrics) redisError() {
	if m != nil {
		m.redisErrors.Inc()
	}
}

func (m *Metrics) flushed(reason string) {
	if m != nil {
		m.flushes.WithLabelValues(reason).Inc()
	}
}
