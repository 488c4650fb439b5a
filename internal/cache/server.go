package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// FlushIfServerChanged protects the invalidator's acknowledged work against a
// Redis restart. The invalidator acknowledges WAL once its drops are in Redis,
// so they are never replayed; a Redis that restarts from an older RDB or AOF
// snapshot brings back entries those drops had removed. It compares the
// server's run_id with the one recorded at <prefix>:srv and, when they
// differ (a restart, a failover, or the first run), flushes the namespace and
// records the new run_id. flushed reports whether it flushed.
func (c *Cache) FlushIfServerChanged(ctx context.Context) (flushed bool, err error) {
	info, err := c.rdb.Info(ctx, "server").Result()
	if err != nil {
		return false, fmt.Errorf("redis run_id: %w", err)
	}
	var runID string
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			runID = v
		}
	}
	if runID == "" {
		return false, errors.New("redis run_id: not in INFO server")
	}
	seen, err := c.rdb.Get(ctx, c.srvKey).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("redis run_id: %w", err)
	}
	if seen == runID {
		return false, nil
	}
	if _, err := c.Flush(ctx, ""); err != nil {
		return false, err
	}
	if err := c.rdb.Set(ctx, c.srvKey, runID, 0).Err(); err != nil {
		return true, fmt.Errorf("record redis run_id: %w", err)
	}
	return true, nil
}
