package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Notices: every script that changes what validators may serve (apply,
// flush, watermark) publishes what it did on <prefix>:inv, in the same
// atomic step, numbered by <prefix>:invseq. A subscriber that has seen
// every number since it subscribed, up to a watermark notice, has seen every
// change the cache underwent before that watermark: what a validator's near
// cache needs to serve without asking Redis.
//
//	<seq>|d|<hex hash>,<hex hash>,...   these entries were dropped or updated
//	<seq>|f|                            a new namespace: nothing cached before holds
//	<seq>|w|<watermark>                 the watermark moved (FormatWatermark)
const notifyLua = `
local function notify(prefix, kind, payload)
  local n = redis.call('INCR', prefix .. ':invseq')
  redis.call('PUBLISH', prefix .. ':inv', n .. '|' .. kind .. '|' .. payload)
end
`

// NoticeKind says what a notice reports.
type NoticeKind byte

// The notice kinds.
const (
	NoticeDrop      NoticeKind = 'd'
	NoticeFlush     NoticeKind = 'f'
	NoticeWatermark NoticeKind = 'w'
)

// Notice is one message of the notice channel.
type Notice struct {
	Seq       uint64
	Kind      NoticeKind
	Hashes    []session.Hash // NoticeDrop
	Watermark Watermark      // NoticeWatermark
}

var errBadNotice = errors.New("bad cache notice")

// ParseNotice decodes a message of the notice channel.
func ParseNotice(msg string) (Notice, error) {
	seq, rest, ok := strings.Cut(msg, "|")
	kind, payload, ok2 := strings.Cut(rest, "|")
	if !ok || !ok2 || len(kind) != 1 {
		return Notice{}, errBadNotice
	}
	n := Notice{Kind: NoticeKind(kind[0])}
	var err error
	if n.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil || n.Seq == 0 {
		return Notice{}, errBadNotice
	}
	switch n.Kind {
	case NoticeDrop:
		for _, hx := range strings.Split(payload, ",") {
			h, err := session.ParseHash(hx)
			if err != nil {
				return Notice{}, fmt.Errorf("%w: %v", errBadNotice, err)
			}
			n.Hashes = append(n.Hashes, h)
		}
	case NoticeFlush:
	case NoticeWatermark:
		if n.Watermark, err = ParseWatermark(payload); err != nil {
			return Notice{}, fmt.Errorf("%w: %v", errBadNotice, err)
		}
	default:
		return Notice{}, errBadNotice
	}
	return n, nil
}

// Notices subscribes to the notice channel of every shard (see
// NoticeShard). The caller receives from it (Receive reconnects and
// subscribes again after a failure) and closes it.
func (c *Cache) Notices(ctx context.Context) *redis.PubSub {
	channels := make([]string, len(c.shards))
	for k, sh := range c.shards {
		channels[k] = sh.prefix + ":inv"
	}
	return c.rdb.Subscribe(ctx, channels...)
}

// Shards is how many shards the cache has (see shard): 1 but on a cluster.
func (c *Cache) Shards() int { return len(c.shards) }

// NoticeShard is the shard whose notices a channel carries; false for a
// channel not of this cache. Each shard numbers its notices on its own.
func (c *Cache) NoticeShard(channel string) (int, bool) {
	for k, sh := range c.shards {
		if channel == sh.prefix+":inv" {
			return k, true
		}
	}
	return 0, false
}

// ShardOf is the shard of a key hash, as NoticeShard numbers them.
func (c *Cache) ShardOf(h session.Hash) int { return c.shardOf(h) }
