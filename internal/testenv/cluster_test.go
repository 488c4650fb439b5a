package testenv_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// TestCluster: a cluster client reads back what it wrote, and the keys spread
// over all three masters.
func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.NewCluster(t, 3, 0)
	want := "redis://" + c.Masters[0].Addr() + "?cluster=true&addr=" + c.Masters[1].Addr() + "&addr=" + c.Masters[2].Addr()
	if c.URL() != want {
		t.Fatalf("URL() = %q, want %q", c.URL(), want)
	}
	rdb := c.Client(t)
	for i := range 100 {
		if err := rdb.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if v, err := rdb.Get(ctx, "k"+strconv.Itoa(i)).Int(); err != nil || v != i {
			t.Fatalf("get k%d = %d, %v; want %d", i, v, err, i)
		}
	}
	for i, m := range c.Masters {
		if n, err := testenv.RedisClient(t, m).DBSize(ctx).Result(); err != nil || n == 0 {
			t.Fatalf("master %d holds %d keys (err %v), want some", i, n, err)
		}
	}
}

// TestClusterFailover: after the first master's replica takes over, a write
// to the first slot range lands on it.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.NewCluster(t, 3, 1)
	replica := c.Replicas[0]
	c.Failover(t, 0)
	if c.Masters[0] != replica {
		t.Fatal("Masters[0] is not the promoted replica")
	}
	rdb := c.Client(t)
	key := ""
	for i := 0; key == ""; i++ {
		slot, err := rdb.ClusterKeySlot(ctx, "k"+strconv.Itoa(i)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if slot < 16384/3 {
			key = "k" + strconv.Itoa(i)
		}
	}
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	if v, err := testenv.RedisClient(t, replica).Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("promoted replica has %s = %q, %v; want v", key, v, err)
	}
}
