package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/app"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// startOn starts an invalidator on the world with another REDIS_URL (and
// any extra settings), and waits until it is active and vouching.
func (w *world) startOn(t *testing.T, bin, redisURL string, extra ...string) *proc {
	t.Helper()
	env := append([]string{"REDIS_URL=" + redisURL}, extra...)
	for _, e := range w.env {
		if !strings.HasPrefix(e, "REDIS_URL=") {
			env = append(env, e)
		}
	}
	p := start(t, bin, env...)
	testenv.WaitFor(t, 60*time.Second, "invalidator active and healthy", func() bool {
		h, code := p.health()
		return code == 200 && h.Role == "active" && h.Status == "healthy" && h.Watermark != ""
	})
	return p
}

// validator is the real validator, in-process, behind an HTTP server.
type validator struct {
	t   *testing.T
	URL string
}

// newValidator serves the world's sessions with settings vars on top of
// DATABASE_URL and PUBLICATION.
func (w *world) newValidator(t *testing.T, vars map[string]string) *validator {
	t.Helper()
	all := map[string]string{"DATABASE_URL": w.URL, "PUBLICATION": w.src.Publication}
	for k, v := range vars {
		all[k] = v
	}
	cfg, err := config.LoadValidator(nil, func(k string) string { return all[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v, err := app.NewValidator(ctx, cfg, zap.NewNop())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(func() { srv.Close(); v.Close(); cancel() })
	return &validator{t: t, URL: srv.URL}
}

// Validate asks POST /v1/sessions/validate about token, as a client would.
func (v *validator) Validate(token string) (valid bool, source string) {
	body, _ := json.Marshal(map[string]string{"token": token})
	resp, err := http.Post(v.URL+"/v1/sessions/validate", "application/json", bytes.NewReader(body))
	if err != nil {
		v.t.Error(err)
		return false, ""
	}
	defer resp.Body.Close()
	var r struct {
		Valid  bool   `json:"valid"`
		Source string `json:"source"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		v.t.Errorf("validate: status %d: %v", resp.StatusCode, err)
	}
	return r.Valid, r.Source
}

// FromCache waits until token is answered valid from the cache.
func (v *validator) FromCache(token string) {
	v.t.Helper()
	testenv.WaitFor(v.t, 30*time.Second, "the session served valid from the cache", func() bool {
		valid, src := v.Validate(token)
		return valid && src == "cache"
	})
}

// revokeAround warms n sessions and has a client validate them in turn all
// along, while four are revoked: two before fault, one right after it and
// one once MAX_STALENESS has passed since. It fails the test when a revoked
// session is answered valid later than maxStaleness after its commit, or
// at all at the end, and returns the tokens of the live sessions.
func (w *world) revokeAround(t *testing.T, v *validator, n int, maxStaleness time.Duration, fault func()) (live []string) {
	t.Helper()
	type sess struct {
		token, id string
		revoked   time.Time // commit of the revocation; zero: live
	}
	var (
		mu       sync.Mutex
		sessions []*sess
		late     []string
	)
	for range n {
		tok, id := w.NewSession(t)
		v.FromCache(tok)
		sessions = append(sessions, &sess{token: tok, id: id})
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	stop := sync.OnceFunc(func() { close(done); wg.Wait() })
	defer stop() // also when fault fails the test
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
			if valid, src := v.Validate(s.token); valid && !revoked.IsZero() && asked.Sub(revoked) > maxStaleness {
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
	fault()
	revoke(sessions[2])
	time.Sleep(maxStaleness + time.Second)
	revoke(sessions[3])
	time.Sleep(maxStaleness + time.Second)
	stop()
	if len(late) > 0 {
		t.Fatalf("revoked sessions accepted past MAX_STALENESS across the fault:\n%s", strings.Join(late, "\n"))
	}
	for _, s := range sessions[:4] {
		if valid, src := v.Validate(s.token); valid {
			t.Errorf("revoked session %s valid from %s after the fault", s.id, src)
		}
	}
	for _, s := range sessions[4:] {
		live = append(live, s.token)
	}
	return live
}
