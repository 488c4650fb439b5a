package cache

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/session"
)

// A shard is one prefix's complete copy of the protocol: its own
// generation, watermark, marks, notices, entries, leases, indexes and
// tombstones. On a single Redis (or a Sentinel group) the cache is one
// shard, the prefix itself. On a Redis Cluster it is ClusterShards shards,
// each under a hash tag of its own, so every key of a shard is in one hash
// slot and every script touches one slot: a key hash's entry lives in the
// shard shardOf picks, the invalidator applies each op to the shard of its
// hash (an op by row id to every shard), and vouches every shard after
// applying. A validator reads one shard's generation, watermark and entry
// in one script, as on a single Redis.
type shard struct {
	prefix                                        string
	genKey, wmKey, pendingKey, recheckKey, srvKey string
}

// ClusterShards is how many shards the cache has on a Redis Cluster. Their
// hash tags fall in evenly spaced slot ranges, so a cluster whose masters
// own equal slot ranges holds equal shares; more masters than shards gain
// nothing.
const ClusterShards = 16

func newShard(prefix string) shard {
	return shard{prefix: prefix, genKey: prefix + ":gen", wmKey: prefix + ":wm",
		pendingKey: prefix + ":flushpending", recheckKey: prefix + ":recheck", srvKey: prefix + ":srv"}
}

// clusterShards names the shards of a prefix on a Redis Cluster:
// {<prefix>/<k>/<salt>}, the salt the first that puts shard k's slot in the
// k-th of ClusterShards equal slot ranges. The prefix has no '/', '{' or
// '}' (config.validKeyPrefix), so no two prefixes share a shard.
func clusterShards(prefix string) []shard {
	shards := make([]shard, ClusterShards)
	for k := range shards {
		for salt := 0; ; salt++ {
			tag := prefix + "/" + strconv.Itoa(k) + "/" + strconv.Itoa(salt)
			if keySlot(tag)*ClusterShards/clusterSlots == k {
				shards[k] = newShard("{" + tag + "}")
				break
			}
		}
	}
	return shards
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// keySlot is the Redis Cluster hash slot of a hash tag's content: CRC16
// (XMODEM) modulo 16384, as the cluster specification gives it.
func keySlot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

// shardOf is the shard of a key hash.
func (c *Cache) shardOf(h session.Hash) int {
	if len(c.shards) == 1 {
		return 0
	}
	return int(binary.BigEndian.Uint16(h[:2])) % len(c.shards)
}

// Generations of a sharded cache are its shards' generations in shard
// order, joined by ','; a single shard's is its generation.
func (c *Cache) joinGenerations(gens []string) string { return strings.Join(gens, ",") }

// shardGeneration is shard k's generation in gen (see joinGenerations); a
// single generation (a Lookup's) is taken as it is.
func (c *Cache) shardGeneration(gen string, k int) string {
	if len(c.shards) == 1 || !strings.Contains(gen, ",") {
		return gen
	}
	gens := strings.Split(gen, ",")
	if k < len(gens) {
		return gens[k]
	}
	return ""
}

// keylessScript is one of the validator's scripts, which name no KEYS (see
// lookupScript) and take their shard's prefix as their first argument.
type keylessScript struct {
	*redis.Script
	src string
}

func newKeylessScript(src string) keylessScript {
	return keylessScript{Script: redis.NewScript(src), src: src}
}

// runOnShard runs s on the node of the shard whose prefix is its first
// argument: on a cluster the command is routed by that argument, whose hash
// tag is the shard's slot.
func (c *Cache) runOnShard(ctx context.Context, s keylessScript, args ...any) *redis.Cmd {
	if !c.cluster {
		return s.Run(ctx, c.rdb, nil, args...)
	}
	cmd := c.evalRouted(ctx, "evalsha", s.Hash(), args)
	if isNoScript(cmd.Err()) {
		cmd = c.evalRouted(ctx, "eval", s.src, args)
	}
	return cmd
}

func (c *Cache) evalRouted(ctx context.Context, verb, script string, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, append([]any{verb, script, 0}, args...)...)
	cmd.SetFirstKeyPos(3)
	_ = c.rdb.Process(ctx, cmd)
	return cmd
}

// masters are the cluster nodes that hold the shards, each once, as the
// client's slot map has them.
func (c *Cache) masters(ctx context.Context) ([]*redis.Client, error) {
	var out []*redis.Client
	seen := map[string]bool{}
	for k := range c.shards {
		node, err := c.rdb.(*redis.ClusterClient).MasterForKey(ctx, c.shards[k].prefix)
		if err != nil {
			return nil, err
		}
		if addr := node.Options().Addr; !seen[addr] {
			seen[addr] = true
			out = append(out, node)
		}
	}
	return out, nil
}

// nodeOf is where shard k's keys are, for the commands a cluster client
// cannot route by key (SCAN): on a cluster its master, else the client.
func (c *Cache) nodeOf(ctx context.Context, k int) (redis.Cmdable, error) {
	if !c.cluster {
		return c.rdb, nil
	}
	return c.rdb.(*redis.ClusterClient).MasterForKey(ctx, c.shards[k].prefix)
}
