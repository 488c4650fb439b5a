package main_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// A Redis Cluster of three masters, each with a replica, and a master
// killed in the middle of a run: both processes reach the cluster
// (REDIS_URL with cluster=true), a client validates tokens all along, and
// every revocation — before, while the cluster fails over, and after — is
// refused within MAX_STALENESS of its commit and never accepted again.
// Sessions are served from every master, and from the validator's near
// cache, which follows every shard's notices.
func TestClusterMasterLostMidRun(t *testing.T) {
	bin := build(t)
	w := newWorld(t, testenv.Sources()[0])
	cl := testenv.NewCluster(t, 3, 1)
	p := w.startOn(t, bin, cl.URL())
	const maxStaleness = 2 * time.Second
	v := w.newValidator(t, map[string]string{"REDIS_URL": cl.URL(), "MAX_STALENESS": maxStaleness.String(), "REDIS_TIMEOUT": "300ms"})
	rdb := cl.Client(t)
	ctx := context.Background()
	live := w.revokeAround(t, v, 16, maxStaleness, func() {
		if err := cl.Masters[1].Stop(); err != nil {
			t.Fatal(err)
		}
		// Its replica takes its slots over once the others time it out.
		testenv.WaitFor(t, 30*time.Second, "the cluster to promote the replica", func() bool {
			rdb.ReloadState(ctx)
			for i := range 20 {
				if rdb.Set(ctx, fmt.Sprint("probe-", i), "x", time.Minute).Err() != nil {
					return false
				}
			}
			return true
		})
	})
	for i, m := range cl.Masters {
		if i == 1 {
			continue
		}
		if n, _ := testenv.RedisClient(t, m).DBSize(ctx).Result(); n < 5 {
			t.Errorf("master %d holds %d keys; want a share of the cache", i, n)
		}
	}
	for _, tok := range live {
		v.FromCache(tok)
	}
	tok, _ := w.NewSession(t)
	v.FromCache(tok)
	testenv.WaitFor(t, 10*time.Second, "validations answered by the near cache", func() bool {
		v.Validate(tok)
		return sumMetric(t, v.URL+"/metrics", "sessionguard_near_cache_hits_total") > 0
	})
	if h, _ := p.health(); h.Role != "active" {
		t.Fatalf("invalidator role %q after the master was lost", h.Role)
	}
}
