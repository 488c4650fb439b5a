package cache

import "strings"

// ShardPrefix is the key prefix of c's shard k.
func ShardPrefix(c *Cache, k int) string { return c.shards[k].prefix }

// ShardSlot is the hash slot of c's shard k, by the cache's own CRC16.
func ShardSlot(c *Cache, k int) int {
	return keySlot(strings.Trim(c.shards[k].prefix, "{}"))
}
