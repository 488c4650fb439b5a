package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "invalidator")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	addr string
}

func start(t *testing.T, bin string, env ...string) *proc {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append(env, "LISTEN_ADDR="+addr, "LOG_LEVEL=warn")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, addr: addr}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

type health struct {
	Status    string `json:"status"`
	Role      string `json:"role"`
	Watermark string `json:"watermark"`
	Table     string `json:"table"`
}

func (p *proc) health() (health, int) {
	var h health
	resp, err := http.Get("http://" + p.addr + "/health")
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h, resp.StatusCode
}

// world is a testenv.World of one source and the environment of an
// invalidator process on it.
type world struct {
	*testenv.World
	src  *testenv.Source
	slot string
	env  []string
}

func newWorld(t *testing.T, src *testenv.Source) *world {
	t.Helper()
	w := src.NewWorld(t, "")
	// Unique per run: slots are cluster-wide and outlive the test database.
	slot := fmt.Sprintf("sg_cmd_%s_%d", strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name())), time.Now().UnixNano()%1e9)
	return &world{World: w, src: src, slot: slot, env: append([]string{"DATABASE_URL=" + w.URL, "REDIS_URL=" + w.Redis.URL(), "REPLICATION_SLOT=" + slot,
		"HEARTBEAT_INTERVAL=200ms", "STANDBY_POLL=200ms"}, src.Env()...)}
}

// NewSession inserts a session into the world's table as its writers do.
func (w *world) NewSession(t *testing.T) (token, id string) {
	t.Helper()
	return w.src.NewSession(t, w.World)
}

// eachSource runs test as a parallel subtest per sessions table, each with
// a world of its own.
func eachSource(t *testing.T, test func(t *testing.T, w *world)) {
	t.Helper()
	for _, src := range testenv.Sources() {
		t.Run(src.Name, func(t *testing.T) {
			t.Parallel()
			test(t, newWorld(t, src))
		})
	}
}

// acked waits until the slot has acknowledged everything committed so far,
// so that the next leader replays nothing from before: the replay of a
// session's INSERT drops its entry too, which would hide a revocation that
// never reached the cache.
func (w *world) acked(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var now string
	if err := w.Pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the slot to acknowledge what was committed", func() bool {
		var done bool
		_ = w.Pool.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`,
			w.slot, now).Scan(&done)
		return done
	})
}

// dropped reports whether the cache holds no valid entry for token.
func (w *world) dropped(t *testing.T, token string) bool {
	en := w.Entry(t, token)
	return en == nil || en.Negative
}

func TestBadConfigExits2WithOneLine(t *testing.T) {
	bin := build(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"DATABASE_URL=mysql://x", "REDIS_URL=redis://127.0.0.1:1/0"}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v", err)
	}
	if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); lines != 0 || !strings.Contains(string(out), "DATABASE_URL") {
		t.Fatalf("output: %q", out)
	}
}

// kill -9 mid-stream: what changed while it was down is applied after the
// restart, and meanwhile validators stop trusting the cache (stale watermark).
func TestKill9ThenRestartLosesNothing(t *testing.T) {
	bin := build(t)
	eachSource(t, func(t *testing.T, w *world) {
		p := start(t, bin, w.env...)
		testenv.WaitFor(t, 60*time.Second, "active and healthy", func() bool {
			h, code := p.health()
			return code == 200 && h.Role == "active" && h.Status == "healthy" && h.Watermark != "" && h.Table == w.Table.Name
		})
		var tokens, ids []string
		for i := 0; i < 5; i++ {
			tok, id := w.NewSession(t)
			w.Warm(t, tok)
			tokens, ids = append(tokens, tok), append(ids, id)
		}
		w.acked(t)
		p.kill()
		for _, id := range ids {
			w.Exec(t, w.src.Revoke, id)
		}
		// Down: entries are still in Redis, yet no validator accepts them once
		// the watermark is older than MAX_STALENESS.
		if w.dropped(t, tokens[0]) {
			t.Fatal("entry dropped with no invalidator running?")
		}
		testenv.WaitFor(t, 5*time.Second, "validators refuse while the invalidator is down", func() bool {
			return !w.Validate(t, tokens[0]).Valid
		})
		p = start(t, bin, w.env...)
		testenv.WaitFor(t, 20*time.Second, "every revocation made while down applied", func() bool {
			for _, tok := range tokens {
				if !w.dropped(t, tok) {
					return false
				}
			}
			return true
		})
	})
}

// Two invalidators: one streams, one waits; kill -9 the active one and the
// standby takes over within seconds.
func TestStandbyTakesOver(t *testing.T) {
	bin := build(t)
	eachSource(t, func(t *testing.T, w *world) {
		a := start(t, bin, w.env...)
		testenv.WaitFor(t, 60*time.Second, "first active", func() bool { h, _ := a.health(); return h.Role == "active" && h.Watermark != "" })
		b := start(t, bin, w.env...)
		testenv.WaitFor(t, 30*time.Second, "second standby and ready", func() bool {
			h, code := b.health()
			if code != 200 || h.Role != "standby" {
				return false
			}
			resp, err := http.Get("http://" + b.addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		tok, id := w.NewSession(t)
		w.Warm(t, tok)
		w.acked(t)
		a.kill()
		killed := time.Now()
		w.Exec(t, w.src.Revoke, id)
		testenv.WaitFor(t, 10*time.Second, "standby active", func() bool { h, _ := b.health(); return h.Role == "active" })
		testenv.WaitFor(t, 10*time.Second, "revocation applied by the new leader", func() bool { return w.dropped(t, tok) })
		t.Logf("take-over and revocation applied %v after kill -9", time.Since(killed))
		if time.Since(killed) > 8*time.Second {
			t.Fatalf("take-over took %v", time.Since(killed))
		}
	})
}

// SIGTERM: the invalidator stops streaming, acknowledges what it applied and
// exits 0; its log is JSON lines with service "invalidator", like the
// validator's.
func TestSIGTERMExits0WithJSONLogs(t *testing.T) {
	bin := build(t)
	w := newWorld(t, testenv.SourceOf(t, testenv.OwnTable()))
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append(w.env, "LISTEN_ADDR="+addr, "LOG_LEVEL=info")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, addr: addr}
	t.Cleanup(func() { p.kill() })
	testenv.WaitFor(t, 30*time.Second, "the invalidator active and healthy", func() bool {
		h, code := p.health()
		return code == 200 && h.Role == "active" && h.Watermark != ""
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20s after SIGTERM\n%s", stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{`"invalidator listening"`, `"replication stopped"`, `"invalidator stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"service":"invalidator"`) {
			t.Errorf("log line is not a JSON line of the invalidator: %s", line)
		}
	}
}
