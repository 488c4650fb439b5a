package cache

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// serverScript: KEYS gen, srv; ARGV a new generation, prefix. When the
// server's run_id is not the one recorded, starts a new namespace and
// records the run_id, in one step; returns 1 when it did.
var serverScript = redis.NewScript(notifyLua + `
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if not run then return redis.error_reply('run_id not in INFO server') end
if run == redis.call('GET', KEYS[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
notify(ARGV[2], 'f', '')
redis.call('SET', KEYS[2], run)
return 1
`)

// FlushIfServerChanged protects the invalidator's acknowledged work against a
// Redis restart. The invalidator acknowledges WAL once its drops are in Redis,
// so they are never replayed; a Redis that restarts from an older RDB or AOF
// snapshot brings back entries those drops had removed. For each shard it
// compares its node's run_id with the one recorded at <prefix>:srv and,
// when they differ (a restart, a failover, or the first run), starts a new
// namespace and records the new run_id, in one script. flushed reports
// whether any shard flushed.
func (c *Cache) FlushIfServerChanged(ctx context.Context) (flushed bool, err error) {
	cmds, err := c.eachShard(ctx, serverScript, func(_ int, sh shard) ([]string, []any) {
		return []string{sh.genKey, sh.srvKey}, []any{newGeneration(), sh.prefix}
	})
	if err != nil {
		return false, fmt.Errorf("redis run_id: %w", err)
	}
	for _, cmd := range cmds {
		if n, _ := cmd.Int(); n == 1 {
			flushed = true
		}
	}
	return flushed, nil
}
