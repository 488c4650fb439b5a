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
// from (0: the walk is complete). A walk may return a hash twice.
func (c *Cache) ScanEntries(ctx context.Context, gen string, cursor uint64) ([]session.Hash, uint64, error) {
	base := c.o.Prefix + ":" + gen + ":s:"
	keys, next, err := c.rdb.Scan(ctx, cursor, base+"*", scanPage).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("scan cache entries: %w", err)
	}
	out := make([]session.Hash, 0, len(keys))
	for _, k := range keys {
		if h, err := session.ParseHash(strings.TrimPrefix(k, base)); err == nil {
			out = append(out, h)
		}
	}
	return out, next, nil
}

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
