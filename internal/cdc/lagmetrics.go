package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/sessionguard/internal/pg"
)

// WALStatuses are the values of pg_replication_slots.wal_status, each a
// label value of sessionguard_invalidator_slot_wal_status.
var WALStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// lagCollector computes the lag metrics when Prometheus scrapes, so they
// never freeze at an old value: a figure that cannot be read is left out
// (an alert on absent() sees it) and counted in scrape_errors_total.
type lagCollector struct {
	c                            *Consumer
	bytes, seconds, walAge, safe *prometheus.Desc
	walStatus                    *prometheus.Desc
	errors                       prometheus.Counter
	timeout                      time.Duration
}

// NewLagCollector returns the scrape-time collector of c's lag figures:
// sessionguard_invalidator_lag_bytes (the slot's confirmed_flush_lsn behind
// the server's WAL), sessionguard_invalidator_lag_seconds (how long the
// slot's walsender has waited for the acknowledgement of what it sent),
// sessionguard_invalidator_watermark_age_seconds (Redis's clock minus the
// watermark in Redis, what validators judge by),
// sessionguard_invalidator_slot_safe_wal_size_bytes and
// sessionguard_invalidator_slot_wal_status{status}.
func NewLagCollector(c *Consumer) prometheus.Collector {
	const ns = "sessionguard_invalidator"
	return &lagCollector{c: c, timeout: 2 * time.Second,
		bytes: prometheus.NewDesc(ns+"_lag_bytes", "pg_current_wal_lsn() - confirmed_flush_lsn of the slot, read at scrape time.", nil, nil),
		seconds: prometheus.NewDesc(ns+"_lag_seconds",
			"Replication lag of the slot in seconds, read at scrape time from pg_stat_replication for the walsender streaming it "+
				"(pg_replication_slots.active_pid): the greatest of write_lag, flush_lag and replay_lag, i.e. how long ago the walsender "+
				"sent the oldest change the invalidator has not yet acknowledged as applied to Redis; it keeps growing while the "+
				"invalidator is stuck. 0 when Postgres reports no lag (caught up); absent while no walsender streams the slot.", nil, nil),
		walAge: prometheus.NewDesc(ns+"_watermark_age_seconds", "Redis TIME minus the watermark stored in Redis, read at scrape time.", nil, nil),
		safe:   prometheus.NewDesc(ns+"_slot_safe_wal_size_bytes", "WAL that can still be written before the slot is lost (absent when unlimited).", nil, nil),
		walStatus: prometheus.NewDesc(ns+"_slot_wal_status",
			"1 for the slot's current pg_replication_slots.wal_status (reserved, extended, unreserved, lost), 0 for the others; all 0 while the slot does not exist. Read at scrape time.",
			[]string{"status"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "scrape_errors_total",
			Help: "Lag figures that could not be read at scrape time."}),
	}
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.bytes
	ch <- l.seconds
	ch <- l.walAge
	ch <- l.safe
	ch <- l.walStatus
	l.errors.Describe(ch)
}

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if pool := l.c.pool.Load(); pool != nil {
		f, err := readSlotFigures(ctx, pool, l.c.o.Slot)
		if err == nil {
			for _, s := range WALStatuses {
				v := 0.0
				if s == f.WALStatus {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(l.walStatus, prometheus.GaugeValue, v, s)
			}
		}
		if err == nil && f.LagBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(l.bytes, prometheus.GaugeValue, float64(f.LagBytes))
			if f.SafeWALSize >= 0 {
				ch <- prometheus.MustNewConstMetric(l.safe, prometheus.GaugeValue, float64(f.SafeWALSize))
			}
		} else {
			l.errors.Inc()
		}
		switch secs, err := readLagSeconds(ctx, pool, l.c.o.Slot); {
		case err == nil:
			ch <- prometheus.MustNewConstMetric(l.seconds, prometheus.GaugeValue, secs)
		case !errors.Is(err, errNoWalsender):
			l.errors.Inc()
		}
	}
	if age, ok := l.watermarkAge(ctx); ok {
		ch <- prometheus.MustNewConstMetric(l.walAge, prometheus.GaugeValue, age)
	}
	l.errors.Collect(ch)
}

// errNoWalsender: no walsender streams the slot, so it has no lag to read.
var errNoWalsender = errors.New("no walsender streams the slot")

// readLagSeconds reads the slot's replication lag from pg_stat_replication:
// the greatest of the write, flush and replay lag of the walsender that
// streams it. Postgres measures each from the moment the walsender sent a
// change (it samples at most one a second) to the moment the client
// reported that position written, flushed or applied; the invalidator
// reports flush and apply only once the effects are in Redis. A position
// the client does not acknowledge keeps its lag growing (Postgres
// interpolates towards the next sample). Postgres clears the figures (NULL)
// once the client has caught up: that is lag 0.
func readLagSeconds(ctx context.Context, q pg.RowQuerier, slot string) (float64, error) {
	var state *string
	var secs *float64
	err := q.QueryRow(ctx, `SELECT r.state, extract(epoch FROM greatest(r.write_lag, r.flush_lag, r.replay_lag))::float8
		FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
		WHERE s.slot_name = $1`, slot).Scan(&state, &secs)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, errNoWalsender
	case err != nil:
		return 0, fmt.Errorf("read replication lag: %w", err)
	case state == nil:
		// Postgres hides a walsender's figures from roles that are neither
		// its own nor pg_read_all_stats: unknown, not zero.
		return 0, errors.New("read replication lag: pg_stat_replication hides the walsender's figures from this role (grant pg_read_all_stats)")
	case secs == nil:
		return 0, nil
	}
	return *secs, nil
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
