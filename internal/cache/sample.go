package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Sampled is an entry as an inspection reads it: with SCAN, GET and PTTL
// only, so reading never changes what validators see.
type Sampled struct {
	Hash  session.Hash
	Value string        // the stored value; a later read that differs found another entry
	Entry *Entry        // nil: the value does not decode, or the key is not a string
	TTL   time.Duration // left to live when read; negative: no expiry
	// NotString: the key holds another type than a string (WRONGTYPE),
	// which no validator wrote; nothing else is read of it.
	NotString bool
}

// scanPage is the COUNT hint of one SCAN call.
const scanPage = 1000

// ScanEntries reads one SCAN page of generation gen's entries, from cursor
// (0 starts a walk), and returns their key hashes and the cursor to go on
// from (0: the walk is complete). A walk may return a hash twice. On a
// cluster the walk goes through the shards in turn, each on its node; the
// cursor's top byte is the shard.
func (c *Cache) ScanEntries(ctx context.Context, gen string, cursor uint64) ([]session.Hash, uint64, error) {
	k, cur := 0, cursor
	if c.cluster {
		k, cur = int(cursor>>shardCursorShift), cursor&(1<<shardCursorShift-1)
	}
	for ; k < len(c.shards); k, cur = k+1, 0 {
		g := c.shardGeneration(gen, k)
		if g == "" {
			continue
		}
		rdb, err := c.nodeOf(ctx, k)
		if err != nil {
			return nil, 0, fmt.Errorf("scan cache entries: %w", err)
		}
		base := c.shards[k].prefix + ":" + g + ":s:"
		keys, next, err := rdb.Scan(ctx, cur, base+"*", scanPage).Result()
		if err != nil {
			return nil, 0, fmt.Errorf("scan cache entries: %w", err)
		}
		out := make([]session.Hash, 0, len(keys))
		for _, key := range keys {
			if h, err := session.ParseHash(strings.TrimPrefix(key, base)); err == nil {
				out = append(out, h)
			}
		}
		switch {
		case next != 0:
			return out, uint64(k)<<shardCursorShift | next, nil
		case k+1 < len(c.shards):
			return out, uint64(k+1) << shardCursorShift, nil
		default:
			return out, 0, nil
		}
	}
	return nil, 0, nil
}

// shardCursorShift places the shard in a cluster walk's cursor: a node's
// own SCAN cursors stay below 2^56.
const shardCursorShift = 56

// ReadEntries reads the entries of hashes in generation gen, in one
// pipeline; an entry that is not there (or expired between its GET and its
// PTTL) is left out. One key of another type does not fail the others.
func (c *Cache) ReadEntries(ctx context.Context, gen string, hashes []session.Hash) ([]Sampled, error) {
	pipe := c.rdb.Pipeline()
	gets := make([]*redis.StringCmd, len(hashes))
	ttls := make([]*redis.DurationCmd, len(hashes))
	for i, h := range hashes {
		k := c.EntryKey(gen, h)
		gets[i], ttls[i] = pipe.Get(ctx, k), pipe.PTTL(ctx, k)
	}
	// Each command's own error is looked at below.
	_, _ = pipe.Exec(ctx)
	out := make([]Sampled, 0, len(hashes))
	for i, h := range hashes {
		v, err := gets[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			out = append(out, Sampled{Hash: h, NotString: true})
			continue
		case err != nil:
			return nil, fmt.Errorf("read cache entry: %w", err)
		}
		ttl, err := ttls[i].Result()
		if err != nil {
			return nil, fmt.Errorf("read cache entry: %w", err)
		}
		if ttl == -2 { // gone since the GET
			continue
		}
		s := Sampled{Hash: h, Value: v, TTL: ttl}
		if e, err := decodeEntry(v); err == nil {
			s.Entry = e
		}
		out = append(out, s)
	}
	return out, nil
}
