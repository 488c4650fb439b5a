package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// TestClientMinIdle: REDIS_MIN_IDLE=0 keeps no idle connection (it used to
// become 2 silently); only a negative value means the default.
func TestClientMinIdle(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, tc := range []struct{ in, want int }{{0, 0}, {-1, 2}, {3, 3}} {
		rdb, err := cache.NewClient(r.URL(), cache.ClientOptions{MinIdleConns: tc.in, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got := rdb.(*redis.Client).Options().MinIdleConns; got != tc.want {
			t.Errorf("MinIdleConns %d: client keeps %d, want %d", tc.in, got, tc.want)
		}
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		// The pool fills its idle connections in the background.
		if tc.want > 0 {
			testenv.WaitFor(t, 5*time.Second, "idle connections", func() bool {
				return int(rdb.PoolStats().IdleConns) >= tc.want
			})
		} else {
			time.Sleep(100 * time.Millisecond)
			if n := rdb.PoolStats().TotalConns; n > 1 {
				t.Errorf("MinIdleConns 0: %d connections, want at most the one Ping used", n)
			}
		}
		_ = rdb.Close()
	}
}
