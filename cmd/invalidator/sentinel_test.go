package main_test

import (
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// Redis Sentinel with a failover in the middle of a run: both processes
// reach Redis through the sentinels (REDIS_URL with master_name), a client
// validates tokens all along, and every revocation — before, during and
// after the failover — is refused within MAX_STALENESS of its commit and
// never accepted again. After the failover the cache serves again.
func TestSentinelFailoverMidRun(t *testing.T) {
	bin := build(t)
	w := newWorld(t, testenv.Sources()[0])
	g := testenv.NewSentinelGroup(t)
	p := w.startOn(t, bin, g.URL())
	const maxStaleness = 2 * time.Second
	v := w.newValidator(t, map[string]string{"REDIS_URL": g.URL(), "MAX_STALENESS": maxStaleness.String(), "REDIS_TIMEOUT": "300ms"})
	live := w.revokeAround(t, v, 6, maxStaleness, func() {
		g.Failover(t) // the revocation just before it may be lost with the old master's last writes
	})
	// The invalidator follows the new master: it vouches for it again, and
	// live sessions are served from the cache there.
	v.FromCache(live[0])
	tok, _ := w.NewSession(t)
	v.FromCache(tok)
	if h, _ := p.health(); h.Role != "active" {
		t.Fatalf("invalidator role %q after the failover", h.Role)
	}
}
