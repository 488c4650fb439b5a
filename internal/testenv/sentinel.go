package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the Sentinel group monitors.
const SentinelMaster = "sgmaster"

// SentinelGroup is a Redis master, its replica and three sentinels
// watching them, all throwaway servers of the test's own.
type SentinelGroup struct {
	Master, Replica *Redis
	Sentinels       []int // ports
}

// NewSentinelGroup starts the group and waits until the replica is in sync
// and every sentinel knows both servers.
func NewSentinelGroup(t testing.TB) *SentinelGroup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := &SentinelGroup{Master: NewRedis(t), Replica: NewRedis(t)}
	replica := RedisClient(t, g.Replica)
	if err := replica.ReplicaOf(ctx, "127.0.0.1", itoa(g.Master.Port)).Err(); err != nil {
		t.Fatalf("replicaof: %v", err)
	}
	WaitFor(t, 30*time.Second, "the replica to sync", func() bool {
		info, _ := replica.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	for range 3 {
		g.Sentinels = append(g.Sentinels, startSentinel(t, ctx, g.Master.Port))
	}
	for _, port := range g.Sentinels {
		s := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		WaitFor(t, 30*time.Second, "a sentinel to see the replica and the other sentinels", func() bool {
			replicas, err1 := s.Replicas(ctx, SentinelMaster).Result()
			sentinels, err2 := s.Sentinels(ctx, SentinelMaster).Result()
			return err1 == nil && err2 == nil && len(replicas) == 1 && len(sentinels) == 2
		})
		_ = s.Close()
	}
	return g
}

// URL is the REDIS_URL of the group, as the processes take it: sentinels in
// the host and addr= parameters, the master's name in master_name.
func (g *SentinelGroup) URL() string {
	u := fmt.Sprintf("redis://127.0.0.1:%d/0?master_name=%s", g.Sentinels[0], SentinelMaster)
	for _, p := range g.Sentinels[1:] {
		u += fmt.Sprintf("&addr=127.0.0.1:%d", p)
	}
	return u
}

// Failover asks a sentinel to promote the replica, and waits until the
// sentinels name it the master and it answers as one.
func (g *SentinelGroup) Failover(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", g.Sentinels[0])})
	defer s.Close()
	if err := s.Failover(ctx, SentinelMaster).Err(); err != nil {
		t.Fatalf("sentinel failover: %v", err)
	}
	replica := RedisClient(t, g.Replica)
	WaitFor(t, 30*time.Second, "the replica promoted and named master by the sentinels", func() bool {
		addr, err := s.GetMasterAddrByName(ctx, SentinelMaster).Result()
		info, _ := replica.Info(ctx, "replication").Result()
		return err == nil && len(addr) == 2 && addr[1] == itoa(g.Replica.Port) && strings.Contains(info, "role:master")
	})
	g.Master, g.Replica = g.Replica, g.Master
}

func startSentinel(t testing.TB, ctx context.Context, masterPort int) int {
	t.Helper()
	bin, err := lookBinary("redis-server", os.Getenv("REDIS_BINDIR"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
`, port, dir, SentinelMaster, masterPort, SentinelMaster, SentinelMaster)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "sentinel.log")
	cmd := exec.Command(bin, conf, "--sentinel", "--logfile", logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	if err := waitFor(ctx, "redis sentinel", exited, logPath, func(ctx context.Context) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	return port
}
