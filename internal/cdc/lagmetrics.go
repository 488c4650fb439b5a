package cdc

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lagCollector computes the lag metrics when Prometheus scrapes, so they
// never freeze at an old value: a figure that cannot be read is left out
// (an alert on absent() sees it) and counted in scrape_errors_total.
type lagCollector struct {
	c                   *Consumer
	bytes, walAge, safe *prometheus.Desc
	errors              prometheus.Counter
	timeout             time.Duration
}

// NewLagCollector returns the scrape-time collector of c's lag figures:
// sessionguard_invalidator_lag_bytes (the slot's confirmed_flush_lsn behind
// the server's WAL), sessionguard_invalidator_watermark_age_seconds (Redis's
// clock minus the watermark in Redis, what validators judge by) and
// sessionguard_invalidator_slot_safe_wal_size_bytes.
func NewLagCollector(c *Consumer) prometheus.Collector {
	const ns = "sessionguard_invalidator"
	return &lagCollector{c: c, timeout: 2 * time.Second,
		bytes:  prometheus.NewDesc(ns+"_lag_bytes", "pg_current_wal_lsn() - confirmed_flush_lsn of the slot, read at scrape time.", nil, nil),
		walAge: prometheus.NewDesc(ns+"_watermark_age_seconds", "Redis TIME minus the watermark stored in Redis, read at scrape time.", nil, nil),
		safe:   prometheus.NewDesc(ns+"_slot_safe_wal_size_bytes", "WAL that can still be written before the slot is lost (absent when unlimited).", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "scrape_errors_total",
			Help: "Lag figures that could not be read at scrape time."}),
	}
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.bytes
	ch <- l.walAge
	ch <- l.safe
	l.errors.Describe(ch)
}

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if pool := l.c.pool.Load(); pool != nil {
		if f, err := readSlotFigures(ctx, pool, l.c.o.Slot); err == nil && f.LagBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(l.bytes, prometheus.GaugeValue, float64(f.LagBytes))
			if f.SafeWALSize >= 0 {
				ch <- prometheus.MustNewConstMetric(l.safe, prometheus.GaugeValue, float64(f.SafeWALSize))
			}
		} else {
			l.errors.Inc()
		}
	}
	if age, ok := l.watermarkAge(ctx); ok {
		ch <- prometheus.MustNewConstMetric(l.walAge, prometheus.GaugeValue, age)
	}
	l.errors.Collect(ch)
}

func (l *lagCollector) watermarkAge(ctx context.Context) (float64, bool) {
	w, err := l.c.cache.Watermark(ctx)
	if err != nil {
		l.errors.Inc()
		return 0, false
	}
	if w.IsZero() {
		return 0, false
	}
	now, err := l.c.cache.Time(ctx)
	if err != nil {
		l.errors.Inc()
		return 0, false
	}
	return now.Sub(w.At).Seconds(), true
}
