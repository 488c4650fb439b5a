package main_test

import (
	"strings"
	"sync"
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
	validate, fromCache := v.Validate, v.FromCache

	// Sessions, all warm; the client validates every one of them in turn,
	// recording when a revoked one is answered valid after its bound.
	type sess struct {
		token, id string
		revoked   time.Time // commit of the revocation; zero: live
	}
	var (
		mu       sync.Mutex
		sessions []*sess
		late     []string
	)
	for range 6 {
		tok, id := w.NewSession(t)
		fromCache(tok)
		sessions = append(sessions, &sess{token: tok, id: id})
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			mu.Lock()
			s := sessions[i%len(sessions)]
			revoked := s.revoked
			mu.Unlock()
			asked := time.Now()
			if valid, src := validate(s.token); valid && !revoked.IsZero() && asked.Sub(revoked) > maxStaleness {
				mu.Lock()
				late = append(late, s.id+" valid from "+src+" "+asked.Sub(revoked).String()+" after its revocation")
				mu.Unlock()
			}
		}
	})
	revoke := func(s *sess) {
		w.Exec(t, w.src.Revoke, s.id)
		mu.Lock()
		s.revoked = time.Now()
		mu.Unlock()
	}

	revoke(sessions[0])
	time.Sleep(500 * time.Millisecond)
	revoke(sessions[1])
	g.Failover(t) // the revocation just before it may be lost with the old master's last writes
	revoke(sessions[2])
	time.Sleep(maxStaleness + time.Second)
	revoke(sessions[3])
	time.Sleep(maxStaleness + time.Second)
	close(done)
	wg.Wait()
	if len(late) > 0 {
		t.Fatalf("revoked sessions accepted past MAX_STALENESS across the failover:\n%s", strings.Join(late, "\n"))
	}
	for _, s := range sessions[:4] {
		if valid, src := validate(s.token); valid {
			t.Errorf("revoked session %s valid from %s after the failover", s.id, src)
		}
	}
	// The invalidator follows the new master: it vouches for it again, and
	// live sessions are served from the cache there.
	fromCache(sessions[4].token)
	tok, _ := w.NewSession(t)
	fromCache(tok)
	if h, _ := p.health(); h.Role != "active" {
		t.Fatalf("invalidator role %q after the failover", h.Role)
	}
}
