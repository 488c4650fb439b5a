package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// clusterCaches are a validator's cache (no namespace of its own) and an
// invalidator's on a three-master cluster of the test's own, reached by
// the project's client from the cluster's REDIS_URL.
func clusterCaches(t *testing.T, replicas int) (validator, invalidator *cache.Cache, cl *testenv.Cluster) {
	t.Helper()
	cl = testenv.NewCluster(t, 3, replicas)
	client := func() redis.UniversalClient {
		rdb, err := cache.NewClient(cl.URL(), cache.ClientOptions{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	return cache.New(client(), cache.Options{}), cache.New(client(), cache.Options{}), cl
}

// Every shard is one slot: the project's CRC16 agrees with the cluster's
// own CLUSTER KEYSLOT, and each shard's slot is in its own sixteenth of the
// slot space, so three masters with equal ranges hold five or six shards
// each.
func TestClusterShardSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, cl := clusterCaches(t, 0)
	rdb := cl.Client(t)
	perMaster := map[string]int{}
	for k := range c.Shards() {
		prefix := cache.ShardPrefix(c, k)
		for _, key := range []string{prefix + ":gen", prefix + ":wm", c.EntryKey(strings.Repeat("g,", k)+"g", shardHash(c, k))} {
			slot, err := rdb.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if want := cache.ShardSlot(c, k); int(slot) != want {
				t.Fatalf("shard %d key %s: cluster says slot %d, the cache %d", k, key, slot, want)
			}
			if lo, hi := k*16384/cache.ClusterShards, (k+1)*16384/cache.ClusterShards; int(slot) < lo || int(slot) >= hi {
				t.Fatalf("shard %d in slot %d, outside [%d,%d)", k, slot, lo, hi)
			}
		}
		node, err := rdb.MasterForKey(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		perMaster[node.Options().Addr]++
	}
	for addr, n := range perMaster {
		if n < 5 || n > 6 {
			t.Errorf("master %s holds %d shards, want 5 or 6 (%v)", addr, n, perMaster)
		}
	}
	if len(perMaster) != 3 {
		t.Errorf("shards on %d masters, want 3: %v", len(perMaster), perMaster)
	}
}

// shardHash is a key hash of shard k.
func shardHash(c *cache.Cache, k int) session.Hash {
	for i := 0; ; i++ {
		if h := session.HashToken(fmt.Sprint("shard-", i)); c.ShardOf(h) == k {
			return h
		}
	}
}

// The whole protocol on a cluster: the invalidator vouches every shard,
// validators fill and hit on every master, revocations (by key hash and by
// row id) drop entries wherever they are, a flush and a lost shard
// generation start new namespaces, and an inspection walks every shard.
func TestClusterProtocol(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, inv, cl := clusterCaches(t, 0)
	rdb := cl.Client(t)
	if _, err := inv.FlushIfServerChanged(ctx); err != nil {
		t.Fatal(err)
	}
	wm := cache.Watermark{At: time.Now(), Source: "db"}
	if _, err := inv.SetWatermark(ctx, wm); err != nil {
		t.Fatal(err)
	}

	// 128 sessions, indexed by a row id: every shard gets some.
	type row struct {
		h, id session.Hash
	}
	var rows []row
	shards := map[int]bool{}
	for i := range 128 {
		r := row{h: session.HashToken(fmt.Sprint("tok-", i)), id: session.HashToken(fmt.Sprint("id-", i))}
		l, err := v.Lookup(ctx, r.h)
		if err != nil {
			t.Fatal(err)
		}
		if l.Gen == "" || l.Lease == "" || l.Watermark.Source != "db" {
			t.Fatalf("lookup %d = gen %q lease %q watermark %+v; want the shard's namespace, a lease and the watermark", i, l.Gen, l.Lease, l.Watermark)
		}
		if ok, err := v.FillIndexed(ctx, l, validSession(time.Hour), r.id); !ok || err != nil {
			t.Fatalf("fill %d = %v, %v", i, ok, err)
		}
		rows = append(rows, r)
		shards[v.ShardOf(r.h)] = true
	}
	if len(shards) != cache.ClusterShards {
		t.Fatalf("128 sessions in %d shards, want all %d", len(shards), cache.ClusterShards)
	}
	var keys int64
	for i, m := range cl.Masters {
		n, _ := testenv.RedisClient(t, m).DBSize(ctx).Result()
		if n < 10 {
			t.Errorf("master %d holds %d keys, want a share of the entries", i, n)
		}
		keys += n
	}
	if si, err := v.Info(ctx); err != nil || si.TotalKeys != keys || si.Version == "" {
		t.Errorf("Info = %+v, %v; want the %d keys of every master and a version", si, err, keys)
	}
	hit := func(h session.Hash) bool {
		t.Helper()
		l, err := v.Lookup(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		return l.Entry != nil
	}
	for _, r := range rows {
		if !hit(r.h) {
			t.Fatal("filled entry missed")
		}
	}

	// An inspection walks every shard.
	gen, err := inv.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[session.Hash]bool{}
	for cursor := uint64(0); ; {
		hs, next, err := inv.ScanEntries(ctx, gen, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			seen[h] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	entries, err := inv.ReadEntries(ctx, gen, []session.Hash{rows[0].h, rows[1].h})
	if len(seen) != len(rows) || err != nil || len(entries) != 2 {
		t.Fatalf("walk found %d entries (want %d); read %d (%v)", len(seen), len(rows), len(entries), err)
	}

	// Revocations: by key hash, and by row id (every shard's index).
	if _, err := inv.Apply(ctx, []cache.Op{cache.Revoke(rows[0].h), cache.RevokeByID(rows[1].id), cache.RevokeByID(rows[2].id)}); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if got, want := hit(r.h), i > 2; got != want {
			t.Fatalf("row %d (shard %d) hit=%v after the revocations, want %v", i, v.ShardOf(r.h), got, want)
		}
	}
	// A fill of a row under its tombstone is refused, whatever its shard.
	l, err := v.Lookup(ctx, session.HashToken("new key of row 1"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := v.FillIndexed(ctx, l, validSession(time.Hour), rows[1].id); ok || err != nil {
		t.Fatalf("fill of a deleted row = %v, %v; want refused", ok, err)
	}

	// A lost generation key resets that shard alone; the watermark's reason
	// says so.
	lost := v.ShardOf(rows[5].h)
	if err := rdb.Del(ctx, cache.ShardPrefix(v, lost)+":gen").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := inv.SetWatermark(ctx, wm)
	if err != nil || r.Reason != "generation_lost" {
		t.Fatalf("watermark after a lost shard generation = %+v, %v; want generation_lost", r, err)
	}
	for _, row := range rows[3:] {
		if got, want := hit(row.h), v.ShardOf(row.h) != lost; got != want {
			t.Fatalf("shard %d hit=%v after shard %d lost its generation, want %v", v.ShardOf(row.h), got, lost, want)
		}
	}
	if r.Old != "" {
		t.Fatalf("old generations %q: no shard that knew its generation reset", r.Old)
	}

	// A flush empties every shard; the old generations' keys go from every
	// node.
	old, err := inv.Flush(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if hit(row.h) {
			t.Fatal("entry served after a flush")
		}
	}
	if n, err := inv.PurgeGeneration(ctx, old); err != nil || n < 200 {
		t.Fatalf("purge after the flush = %d, %v; want the old entries and indexes", n, err)
	}
}

// A cluster node named without cluster=true is refused at start: most
// shards would be elsewhere.
func TestClusterModeChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := testenv.NewCluster(t, 3, 0)
	for _, tc := range []struct {
		url  string
		fail bool
	}{{cl.Masters[1].URL(), true}, {cl.URL(), false}} {
		rdb, err := cache.NewClient(tc.url, cache.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = cache.New(rdb, cache.Options{}).CheckMode(ctx)
		_ = rdb.Close()
		if (err != nil) != tc.fail || (tc.fail && !strings.Contains(err.Error(), "cluster=true")) {
			t.Errorf("%s: CheckMode = %v; want an error naming cluster=true: %v", tc.url, err, tc.fail)
		}
	}
	r := testenv.NewRedis(t)
	if err := cache.New(testenv.RedisClient(t, r), cache.Options{}).CheckMode(ctx); err != nil {
		t.Errorf("a single Redis: CheckMode = %v", err)
	}
}

// Marks owed by every shard: a flush marked pending is seen whichever shard
// keeps it, and shards that reset on their own (and so hold different
// recheck xids) get a flush of every shard marked, so they agree again.
func TestClusterMarks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, inv, cl := clusterCaches(t, 0)
	rdb := cl.Client(t)
	if _, err := inv.FlushIfServerChanged(ctx); err != nil {
		t.Fatal(err)
	}
	token, err := inv.MarkFlushPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, cache.ShardPrefix(inv, 0)+":flushpending").Err(); err != nil {
		t.Fatal(err)
	}
	if owed, err := inv.FlushPending(ctx); owed != token || err != nil {
		t.Fatalf("FlushPending = %q, %v; want the mark %q of the other shards", owed, err, token)
	}
	if err := inv.ClearFlushPending(ctx, token); err != nil {
		t.Fatal(err)
	}
	if owed, _ := inv.FlushPending(ctx); owed != "" {
		t.Fatalf("mark %q left after it was cleared", owed)
	}

	if err := inv.ScheduleRecheck(ctx, 100, 2); err != nil {
		t.Fatal(err)
	}
	if xid, err := inv.Recheck(ctx); xid != 100 || err != nil {
		t.Fatalf("Recheck = %d, %v; want 100", xid, err)
	}
	if owed, _ := inv.FlushPending(ctx); owed != "" {
		t.Fatal("a flush marked though every shard agrees")
	}
	if err := rdb.Set(ctx, cache.ShardPrefix(inv, 7)+":recheck", "250|1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A heartbeat that counted the others' recheck: shard 7 is not left
	// unchecked, it resets and records this heartbeat's.
	r, err := inv.Vouch(ctx, cache.Vouch{Watermark: cache.Watermark{At: time.Now(), Source: "db"}, Recheck: 100, Open: 1, Xmax: 260, InProgress: 2})
	if err != nil || r.Reason != "recheck_other" || len(strings.Split(r.Old, ",")) != cache.ClusterShards {
		t.Fatalf("vouch = %+v, %v; want recheck_other, with every shard's old generation", r, err)
	}
	for k := range inv.Shards() {
		want := "100|1"
		if k == 7 {
			want = "260|2"
		}
		if v, _ := rdb.Get(ctx, cache.ShardPrefix(inv, k)+":recheck").Result(); v != want {
			t.Fatalf("shard %d recheck %q, want %q", k, v, want)
		}
	}
	if _, err := inv.Recheck(ctx); err != nil {
		t.Fatal(err)
	}
	owed, err := inv.FlushPending(ctx)
	if err != nil || owed == "" {
		t.Fatalf("shards disagree on their recheck, FlushPending = %q, %v; want a flush owed", owed, err)
	}
	r, err = inv.Vouch(ctx, cache.Vouch{Watermark: cache.Watermark{At: time.Now(), Source: "db"}, Owed: owed, Xmax: 300, InProgress: 3})
	if err != nil || r.Reason != "flush_pending" {
		t.Fatalf("vouch = %+v, %v; want flush_pending", r, err)
	}
	for k := range inv.Shards() {
		if v, _ := rdb.Get(ctx, cache.ShardPrefix(inv, k)+":recheck").Result(); v != "300|3" {
			t.Fatalf("shard %d recheck %q after the flush, want 300|3", k, v)
		}
	}
}

// A planned failover (CLUSTER FAILOVER) gives the validator's scripts,
// which name no KEYS, no MOVED to follow but an error: the client reloads
// its slot map on it, and lookups of every shard answer again within
// seconds, not at go-redis's minute-long periodic reload.
func TestClusterFailoverFollowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, inv, cl := clusterCaches(t, 1)
	if _, err := inv.SetWatermark(ctx, cache.Watermark{At: time.Now(), Source: "db"}); err != nil {
		t.Fatal(err)
	}
	lookups := func() error {
		for k := range v.Shards() {
			if _, err := v.Lookup(ctx, shardHash(v, k)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := lookups(); err != nil {
		t.Fatal(err)
	}
	cl.Failover(t, 0)
	start := time.Now()
	testenv.WaitFor(t, 10*time.Second, "lookups of every shard to answer after the failover", func() bool {
		return lookups() == nil
	})
	t.Logf("every shard answers %v after the failover settled", time.Since(start).Round(time.Millisecond))
	if _, err := inv.SetWatermark(ctx, cache.Watermark{At: time.Now(), Source: "db"}); err != nil {
		t.Fatalf("the invalidator after the failover: %v", err)
	}
}
