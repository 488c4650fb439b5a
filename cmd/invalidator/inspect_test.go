package main_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// metric reads one sample of the invalidator's /metrics (-1: absent).
func (p *proc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// The active invalidator's sampled check counts what it compares, counts
// nothing while the cache agrees, and counts a stale entry planted behind
// its back (a revoked session cached valid) once.
func TestSampledCheckCountsADisagreement(t *testing.T) {
	bin := build(t)
	w := newWorld(t, testenv.SourceOf(t, testenv.OwnTable()))
	p := start(t, bin, append(w.env, "INSPECT_INTERVAL=100ms", "INSPECT_SAMPLE=20", "INSPECT_GRACE=200ms")...)
	const (
		checked  = "sessionguard_invalidator_inspect_checked_total"
		revoked  = `sessionguard_invalidator_inspect_disagreements_total{kind="revoked"}`
		negative = `sessionguard_invalidator_inspect_disagreements_total{kind="negative"}`
		errs     = "sessionguard_invalidator_inspect_errors_total"
	)
	testenv.WaitFor(t, 60*time.Second, "active and healthy", func() bool {
		h, code := p.health()
		return code == 200 && h.Role == "active" && h.Watermark != ""
	})
	for _, s := range []string{checked, revoked, negative, errs} {
		if v := p.metric(t, s); v < 0 {
			t.Fatalf("%s absent at start", s)
		}
	}
	token, _ := w.NewSession(t)
	w.Warm(t, token)
	testenv.WaitFor(t, 10*time.Second, "the entry checked a few times", func() bool { return p.metric(t, checked) >= 3 })
	if d, e := p.metric(t, revoked)+p.metric(t, negative), p.metric(t, errs); d != 0 || e != 0 {
		t.Fatalf("agreeing cache: %v disagreements, %v errors", d, e)
	}

	stale, id := w.NewSession(t)
	w.Warm(t, stale)
	row := w.Row(t, stale)
	w.Exec(t, w.src.Revoke, id)
	w.Refused(t, stale, 10*time.Second)
	w.Plant(t, stale, row) // once the invalidator's hold on fills has passed
	testenv.WaitFor(t, 10*time.Second, "the stale entry counted", func() bool { return p.metric(t, revoked) == 1 })
	time.Sleep(time.Second) // more rounds: counted once
	if v := p.metric(t, revoked); v != 1 {
		t.Fatalf("counted %v times", v)
	}
}
