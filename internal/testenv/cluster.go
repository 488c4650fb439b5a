package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of throwaway servers of the test's own. The
// masters hold the 16384 slots in equal contiguous ranges, in order; with n
// replicas a master, Replicas[i*n:(i+1)*n] replicate Masters[i].
type Cluster struct {
	Masters  []*Redis
	Replicas []*Redis
}

// NewCluster starts the cluster and waits until every node reports it ok
// and knows every other, and every replica is in sync. Nodes time out after
// a second, so a failover takes seconds, not the default fifteen.
func NewCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &Cluster{}
	var firstBus int
	for i := range masters {
		r, bus := newClusterNode(t, ctx)
		if i == 0 {
			firstBus = bus
		}
		c.Masters = append(c.Masters, r)
	}
	for range masters * replicasPerMaster {
		r, _ := newClusterNode(t, ctx)
		c.Replicas = append(c.Replicas, r)
	}
	rdbs := c.clients(t)
	// Distinct epochs spare the nodes resolving a collision after they meet.
	for i, rdb := range rdbs[:masters] {
		if err := rdb.Do(ctx, "cluster", "set-config-epoch", i+1).Err(); err != nil {
			t.Fatalf("cluster set-config-epoch: %v", err)
		}
		if err := rdb.Do(ctx, "cluster", "addslotsrange", i*16384/masters, (i+1)*16384/masters-1).Err(); err != nil {
			t.Fatalf("cluster addslotsrange: %v", err)
		}
	}
	for _, rdb := range rdbs[1:] {
		if err := rdb.Do(ctx, "cluster", "meet", "127.0.0.1", c.Masters[0].Port, firstBus).Err(); err != nil {
			t.Fatalf("cluster meet: %v", err)
		}
	}
	WaitFor(t, 30*time.Second, "every cluster node to know every other", func() bool {
		for _, rdb := range rdbs {
			if _, ok := c.view(ctx, rdb); !ok {
				return false
			}
		}
		return true
	})
	for i, rdb := range rdbs[masters:] {
		id, err := rdbs[i/replicasPerMaster].ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("cluster myid: %v", err)
		}
		if err := rdb.ClusterReplicate(ctx, id).Err(); err != nil {
			t.Fatalf("cluster replicate: %v", err)
		}
	}
	c.waitSettled(t, ctx, "the cluster to come up")
	return c
}

// URL is the REDIS_URL of the cluster, as the processes take it: cluster=true,
// and every master as a seed, the first in the host and the rest in addr=
// parameters.
func (c *Cluster) URL() string {
	u := "redis://" + c.Masters[0].Addr() + "?cluster=true"
	for _, m := range c.Masters[1:] {
		u += "&addr=" + m.Addr()
	}
	return u
}

// Client is a go-redis cluster client seeded with every master, closed when
// the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		addrs[i] = m.Addr()
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Failover has the first replica of Masters[master] take over its slots
// (CLUSTER FAILOVER), swaps the two in Masters and Replicas, and waits until
// the cluster agrees: the replica a master, the old master its replica in
// sync, and every node ok.
func (c *Cluster) Failover(t testing.TB, master int) {
	t.Helper()
	if len(c.Replicas) == 0 {
		t.Fatal("cluster failover: the cluster has no replicas")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i := master * len(c.Replicas) / len(c.Masters)
	if err := RedisClient(t, c.Replicas[i]).ClusterFailover(ctx).Err(); err != nil {
		t.Fatalf("cluster failover: %v", err)
	}
	c.Masters[master], c.Replicas[i] = c.Replicas[i], c.Masters[master]
	c.waitSettled(t, ctx, "the replica promoted and the cluster settled")
}

// clients returns a client (RedisClient) for each node: the masters', then
// the replicas'.
func (c *Cluster) clients(t testing.TB) []*redis.Client {
	t.Helper()
	var rdbs []*redis.Client
	for _, r := range append(append([]*Redis{}, c.Masters...), c.Replicas...) {
		rdbs = append(rdbs, RedisClient(t, r))
	}
	return rdbs
}

// view reads a node's CLUSTER NODES: ok when it lists every node of c, none
// in handshake or failing; it returns how many it takes for masters.
func (c *Cluster) view(ctx context.Context, rdb *redis.Client) (masters int, ok bool) {
	out, err := rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return 0, false
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines {
		fields := strings.Fields(line)
		if len(fields) < 3 || strings.Contains(fields[2], "handshake") || strings.Contains(fields[2], "fail") {
			return 0, false
		}
		if strings.Contains(fields[2], "master") {
			masters++
		}
	}
	return masters, len(lines) == len(c.Masters)+len(c.Replicas)
}

// waitSettled waits until every master answers as one, every replica is in
// sync with its own master, and every node reports cluster_state:ok and sees
// the masters that c has.
func (c *Cluster) waitSettled(t testing.TB, ctx context.Context, what string) {
	t.Helper()
	n := len(c.Replicas) / len(c.Masters)
	rdbs := c.clients(t)
	WaitFor(t, 30*time.Second, what, func() bool {
		for i, rdb := range rdbs {
			repl, _ := rdb.Info(ctx, "replication").Result()
			if i < len(c.Masters) && !strings.Contains(repl, "role:master") {
				return false
			}
			if i >= len(c.Masters) {
				master := c.Masters[(i-len(c.Masters))/n]
				if !strings.Contains(repl, fmt.Sprintf("master_port:%d\r\n", master.Port)) || !strings.Contains(repl, "master_link_status:up") {
					return false
				}
			}
			info, _ := rdb.ClusterInfo(ctx).Result()
			masters, ok := c.view(ctx, rdb)
			if !ok || masters != len(c.Masters) || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	})
}

// newClusterNode starts a cluster-enabled redis-server, stopped when the test
// ends, and returns it with its cluster bus port. The bus port is a free port
// of its own: the default, port+10000, is past 65535 for free ports above
// 55535. Its nodes.conf is in its directory, so a restart keeps its node id.
// A master serves a replica's full sync at once, not after the default 5s
// wait for more replicas.
func newClusterNode(t testing.TB, ctx context.Context) (*Redis, int) {
	t.Helper()
	bus, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartRedis(ctx,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000", "--cluster-port", itoa(bus),
		"--repl-diskless-sync-delay", "0")
	if err != nil {
		t.Fatalf("start cluster node: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, bus
}
