package httpapi_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// findProxy looks for a proxy's binary on the PATH and in dirs; the test
// fails (CI installs pkg) rather than skipping when it is missing.
func findProxy(t *testing.T, name, pkg string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install it with `apt-get install -y %s` (Debian/Ubuntu)", name, pkg)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// runProxy starts cmd, a proxy listening on addr, in a process group of its
// own; at cleanup the group gets stop, and SIGKILL after 5s. It waits until
// addr accepts connections and returns its base URL; diag says what to show
// when the proxy fails or the test does.
func runProxy(t *testing.T, cmd *exec.Cmd, addr string, stop syscall.Signal, diag func() string) string {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, stop)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Log(diag())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before listening on %s: %s", cmd.Path, addr, diag())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s: %s", cmd.Path, addr, diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
