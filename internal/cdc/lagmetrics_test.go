package cdc_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// gauges gathers reg and returns the values of name's series by their
// first label's value ("" for a series without labels).
func gauges(t *testing.T, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			if len(m.GetLabel()) > 0 {
				label = m.GetLabel()[0].GetValue()
			}
			out[label] = m.GetGauge().GetValue()
		}
	}
	return out
}

// lag_seconds is Postgres's lag of the slot's walsender: small while the
// invalidator keeps up, growing while it cannot apply (Redis down) although
// it keeps answering the server, small again once it caught up.
// slot_wal_status names the slot's wal_status as pg_replication_slots does.
func TestLagSecondsAndWALStatusMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	reg := prometheus.NewRegistry()
	c, _ := e.consumer(t, nil)
	reg.MustRegister(cdc.NewLagCollector(c))
	lag := func() (float64, bool) {
		v, ok := gauges(t, reg, "sessionguard_invalidator_lag_seconds")[""]
		return v, ok
	}

	var want string
	if err := e.Pool.QueryRow(context.Background(), `SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&want); err != nil {
		t.Fatal(err)
	}
	st := gauges(t, reg, "sessionguard_invalidator_slot_wal_status")
	if len(st) != len(cdc.WALStatuses) || st[want] != 1 {
		t.Fatalf("slot_wal_status %v, want every status with %s = 1", st, want)
	}
	for s, v := range st {
		if s != want && v != 0 {
			t.Fatalf("slot_wal_status %v: %s is 1 too", st, s)
		}
	}
	if v, ok := lag(); !ok || v < 0 || v > 1 {
		t.Fatalf("lag_seconds %v (present %v) while streaming", v, ok)
	}

	token, id := e.NewSession(t)
	e.Warm(t, token)
	if err := e.Redis.Stop(); err != nil {
		t.Fatal(err)
	}
	// Postgres samples the send time of at most one commit a second.
	time.Sleep(1100 * time.Millisecond)
	e.Exec(t, e.src.Revoke, id)
	testenv.WaitFor(t, 15*time.Second, "lag_seconds above 2s while the revocation cannot be applied", func() bool {
		v, _ := lag()
		return v > 2
	})
	first, _ := lag()
	time.Sleep(time.Second)
	v, _ := lag()
	if v < first+0.5 {
		t.Fatalf("lag_seconds %v a second after %v: not growing while stuck", v, first)
	}
	t.Logf("lag_seconds while Redis is down: %.2f, a second later %.2f", first, v)
	if err := e.Redis.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "lag_seconds back under a second once applied", func() bool {
		v, ok := lag()
		return ok && v < 1
	})
}
