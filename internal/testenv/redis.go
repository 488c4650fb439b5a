package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a throwaway redis-server owned by this process. It keeps nothing
// on disk, so a restart starts empty, as a crashed cache would.
type Redis struct {
	Port int
	Dir  string
	bin  string
	args []string // extra redis-server arguments, kept across restarts

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedis starts redis-server on a free port, with args added to its
// command line.
func StartRedis(ctx context.Context, args ...string) (*Redis, error) {
	bin, err := lookBinary("redis-server", os.Getenv("REDIS_BINDIR"))
	if err != nil {
		return nil, fmt.Errorf("%w: redis-server not found; install it with `apt-get install -y redis-server` (Debian/Ubuntu) or set REDIS_BINDIR", ErrMissing)
	}
	dir, err := os.MkdirTemp("", "sessionguard-redis-")
	if err != nil {
		return nil, fmt.Errorf("create redis temp dir: %w", err)
	}
	r := &Redis{Dir: dir, bin: bin, args: args}
	for attempt := 0; ; attempt++ {
		if r.Port, err = FreePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err = r.Start(ctx); err == nil {
			return r, nil
		}
		if attempt == 2 || ctx.Err() != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (r *Redis) logPath() string { return filepath.Join(r.Dir, "redis.log") }

// Start starts the server (again) on r.Port.
func (r *Redis) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("redis already running")
	}
	cmd := exec.Command(r.bin, append([]string{
		"--port", itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", r.Dir, "--logfile", r.logPath(),
		"--daemonize", "no"}, r.args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	err := waitFor(wctx, "redis-server", exited, r.logPath(), func(ctx context.Context) error {
		return c.Ping(ctx).Err()
	})
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		r.cmd = nil
	}
	return err
}

// Stop kills the server (SIGKILL: the cache vanishes as in a crash).
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return nil
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
	return nil
}

// Close stops the server and removes its directory.
func (r *Redis) Close() error {
	err := r.Stop()
	if rerr := os.RemoveAll(r.Dir); err == nil {
		err = rerr
	}
	return err
}

// Addr is host:port.
func (r *Redis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// URL is a redis:// URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }
