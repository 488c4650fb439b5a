package cache_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// BenchmarkApplyRevoke100k: Redis's own time (INFO commandstats) running
// the apply script for 100,000 revocations of cached entries, 1,000 ops per
// Apply as the invalidator sends them; the flood's main cost in Redis
// (docs/invalidator.md, Throughput under a flood). Needs SG_BENCH=1:
//
//	SG_BENCH=1 go test -run '^$' -bench ApplyRevoke100k -benchtime 3x ./internal/cache/
func BenchmarkApplyRevoke100k(b *testing.B) {
	if os.Getenv("SG_BENCH") != "1" {
		b.Skip("set SG_BENCH=1 to run")
	}
	const n, per = 100_000, 1000
	ctx := context.Background()
	rdb := testenv.RedisClient(b, testenv.NewRedis(b))
	c := cache.New(rdb, cache.Options{StartsNamespace: true})
	ops := make([]cache.Op, n)
	for i := range ops {
		ops[i] = cache.Revoke(session.HashToken(fmt.Sprint("t-", i)))
	}
	var usec, wall float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := rdb.FlushAllAsync(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Flush(ctx, ""); err != nil { // a namespace
			b.Fatal(err)
		}
		gen, err := c.Generation(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pipe := rdb.Pipeline()
		for j, op := range ops {
			pipe.Set(ctx, c.EntryKey(gen, op.Hash), "0", time.Hour) // a negative entry: any value does
			if j%2000 == 1999 {
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		_ = rdb.ConfigResetStat(ctx).Err()
		b.StartTimer()
		t0 := time.Now()
		changed := 0
		for start := 0; start < n; start += per {
			k, err := c.Apply(ctx, ops[start:start+per])
			if err != nil {
				b.Fatal(err)
			}
			changed += k
		}
		wall += time.Since(t0).Seconds()
		b.StopTimer()
		if changed != n {
			b.Fatalf("%d entries dropped, want %d", changed, n)
		}
		usec += evalshaUsec(b, rdb)
		b.StartTimer()
	}
	b.ReportMetric(usec/1e6/float64(b.N), "redis_script_s")
	b.ReportMetric(wall/float64(b.N), "wall_s")
}

// evalshaUsec reads the microseconds Redis spent in EVALSHA since the last
// CONFIG RESETSTAT.
func evalshaUsec(b *testing.B, rdb *redis.Client) float64 {
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
			for _, f := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					x, _ := strconv.ParseFloat(v, 64)
					return x
				}
			}
		}
	}
	b.Fatal("no evalsha in commandstats")
	return 0
}

// BenchmarkClusterVsSingle: a validator's cache hit and an invalidator's
// apply of 1,000 revocations, on one Redis and on a three-master cluster
// of the same machine (the same Redis binary; every server on loopback).
// Compare each pair as a ratio from the same run:
//
//	go test -run '^$' -bench ClusterVsSingle -count 5 ./internal/cache/
func BenchmarkClusterVsSingle(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"single", "cluster"} {
		url := testenv.NewRedis(b).URL()
		if mode == "cluster" {
			url = testenv.NewCluster(b, 3, 0).URL()
		}
		rdb, err := cache.NewClient(url, cache.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = rdb.Close() })
		c := cache.New(rdb, cache.Options{})
		if _, err := c.SetWatermark(ctx, cache.Watermark{At: time.Now(), Source: "db"}); err != nil {
			b.Fatal(err)
		}
		hashes := make([]session.Hash, 1000)
		ops := make([]cache.Op, len(hashes))
		for i := range hashes {
			hashes[i] = session.HashToken(fmt.Sprint("bench-", i))
			ops[i] = cache.Revoke(hashes[i])
			l, err := c.Lookup(ctx, hashes[i])
			if err != nil {
				b.Fatal(err)
			}
			if ok, err := c.Fill(ctx, l, validSession(time.Hour)); !ok || err != nil {
				b.Fatalf("fill: %v %v", ok, err)
			}
		}
		b.Run("hit/"+mode, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				l, err := c.Lookup(ctx, hashes[i%len(hashes)])
				if err != nil || l.Entry == nil {
					b.Fatalf("lookup: %+v %v", l, err)
				}
			}
		})
		b.Run("apply1000/"+mode, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Apply(ctx, ops); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
