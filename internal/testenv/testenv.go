// Package testenv starts throwaway PostgreSQL and Redis servers on free
// loopback ports, in temporary directories, for tests, benchmarks and the
// local demo. Nothing here touches the machine's own database or cache.
//
// PostgreSQL runs with wal_level=logical so the invalidator can stream from
// it. When the current user is root (Postgres refuses to run as root) the
// server runs as the "postgres" system user.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrMissing reports a server binary that is not installed; its message says
// what to install.
var ErrMissing = errors.New("testenv: prerequisite missing")

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check until it succeeds, the context ends or exited reports
// that the process died.
func waitFor(ctx context.Context, what string, exited <-chan struct{}, logPath string, check func(context.Context) error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not come up: %w (last error: %v)%s", what, ctx.Err(), last, tailLog(logPath))
		case <-exited:
			return fmt.Errorf("%s exited during start-up (last error: %v)%s", what, last, tailLog(logPath))
		case <-tick.C:
		}
	}
}

func tailLog(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n--- " + filepath.Base(path) + " ---\n" + strings.Join(lines, "\n")
}

// lookBinary finds a server binary in dirs or on PATH.
func lookBinary(name string, dirs ...string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

func itoa(n int) string { return strconv.Itoa(n) }
