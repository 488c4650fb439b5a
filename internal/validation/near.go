package validation

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// near is the validator's in-process copy of cache entries it read from
// Redis. It follows the cache's notice channels (cache.Notices): every drop,
// flush and watermark the invalidator's scripts made, numbered without gaps
// per cache shard (one but on a Redis Cluster). An entry is served only
// while the last watermark received from its shard passes the same guard as
// a Redis hit (Distrust): the validator has then received every drop of
// that shard up to a watermark younger than MAX_STALENESS. A gap in a
// shard's numbers or a bad notice empties the cache, and so does a lost
// subscription.
type near struct {
	store   *otter.Cache[session.Hash, nearEntry]
	m       *Metrics
	shardOf func(session.Hash) int

	mu     sync.Mutex
	shards []*nearShard
}

// nearShard is what the near cache knows of one cache shard's notices.
type nearShard struct {
	// Under near.mu.
	synced  bool   // subscribed: notices arrive from a known point on
	seq     uint64 // last notice applied (0: none since subscribing)
	dataSeq uint64 // seq of the last drop or flush
	epoch   uint64 // bumped by every reset

	wm    atomic.Pointer[cache.Watermark] // last watermark notice; nil: none since the last reset
	clock atomic.Pointer[redisClock]      // from the last lookup on the shard's node
}

// nearEntry is a copy of a Redis entry, living no longer than it did.
type nearEntry struct {
	e   *cache.Entry
	ttl time.Duration
}

// redisClock estimates Redis's clock from one lookup: its TIME, plus the
// time elapsed on our monotonic clock since the lookup was sent. That can
// only run ahead of Redis's (by the trip there), the safe side for the
// staleness guard, and no step of our wall clock moves it.
type redisClock struct {
	redis time.Time
	sent  time.Time
}

func (c *redisClock) now() time.Time { return c.redis.Add(time.Since(c.sent)) }

// ticket is what a validator knew before a Redis lookup (see put).
type ticket struct {
	epoch uint64
	ok    bool
}

// newNear makes a near cache for a cache of shards shards; shardOf says
// which holds a key hash.
func newNear(size int, ttl, negativeTTL time.Duration, shards int, shardOf func(session.Hash) int, m *Metrics) *near {
	n := &near{m: m, shardOf: shardOf, shards: make([]*nearShard, shards)}
	for k := range n.shards {
		n.shards[k] = &nearShard{}
	}
	n.store = otter.Must(&otter.Options[session.Hash, nearEntry]{
		MaximumSize: size,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[session.Hash, nearEntry]) time.Duration {
			limit := ttl
			if e.Value.e.Negative {
				limit = negativeTTL
			}
			return min(limit, e.Value.ttl)
		}),
	})
	m.nearSize(func() float64 { return float64(n.store.EstimatedSize()) })
	return n
}

func (n *near) shard(h session.Hash) *nearShard { return n.shards[n.shardOf(h)] }

// get returns h's entry and the watermark it may be served under, with
// Redis's clock as estimated from the last lookup on its shard.
func (n *near) get(h session.Hash) (*cache.Entry, cache.Watermark, time.Time, bool) {
	sh := n.shard(h)
	wm, clock := sh.wm.Load(), sh.clock.Load()
	if wm == nil || clock == nil {
		return nil, cache.Watermark{}, time.Time{}, false
	}
	e, ok := n.store.GetIfPresent(h)
	if !ok {
		return nil, cache.Watermark{}, time.Time{}, false
	}
	return e.e, *wm, clock.now(), true
}

// begin is called before a Redis lookup of h.
func (n *near) begin(h session.Hash) ticket {
	sh := n.shard(h)
	n.mu.Lock()
	defer n.mu.Unlock()
	return ticket{epoch: sh.epoch, ok: sh.synced}
}

// looked records the Redis clock a lookup sent at sent read.
func (n *near) looked(l cache.Lookup, sent time.Time) {
	n.shard(l.Hash).clock.Store(&redisClock{redis: l.Now, sent: sent})
}

// put stores the entry a lookup read, when the near cache has applied no
// drop or flush of its shard that the Redis it read had not (dataSeq <= the
// lookup's notice number: a later one arrives after and drops the copy),
// and no reset of the shard came since begin. A Redis that is behind in its
// numbering (a promoted replica) is refused.
func (n *near) put(t ticket, l cache.Lookup) {
	if l.Entry == nil || l.EntryTTL <= 0 {
		return
	}
	sh := n.shard(l.Hash)
	n.mu.Lock()
	defer n.mu.Unlock()
	if t.ok && sh.synced && t.epoch == sh.epoch && sh.dataSeq <= l.Seq {
		n.store.Set(l.Hash, nearEntry{e: l.Entry, ttl: l.EntryTTL})
	}
}

// subscribed starts shard k over from a new subscription: what was
// published before it may have been missed.
func (n *near) subscribed(k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resetLocked(n.shards[k], "subscribed")
	n.shards[k].synced = true
}

// lost empties the cache until the next subscription.
func (n *near) lost(reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, sh := range n.shards {
		n.resetLocked(sh, "")
	}
	n.m.nearReset(reason)
}

// lostShard empties the cache and ignores shard k's notices until its
// channel is subscribed again.
func (n *near) lostShard(k int, reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resetLocked(n.shards[k], reason)
}

// resetLocked forgets what sh's notices said; the whole store goes, since
// a copy's shard is not kept with it. reason "" counts no reset.
func (n *near) resetLocked(sh *nearShard, reason string) {
	n.store.InvalidateAll()
	sh.wm.Store(nil)
	sh.synced, sh.seq, sh.dataSeq = false, 0, 0
	sh.epoch++
	if reason != "" {
		n.m.nearReset(reason)
	}
}

// notice applies one notice of shard k, in channel order.
func (n *near) notice(k int, nt cache.Notice) {
	sh := n.shards[k]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !sh.synced {
		return
	}
	if sh.seq != 0 && nt.Seq != sh.seq+1 {
		// A notice was missed (or the numbering restarted: Redis lost
		// its keys): anything held may be stale.
		n.resetLocked(sh, "gap")
		sh.synced = true
	}
	sh.seq = nt.Seq
	switch nt.Kind {
	case cache.NoticeDrop:
		for _, h := range nt.Hashes {
			n.store.Invalidate(h)
		}
		sh.dataSeq = nt.Seq
	case cache.NoticeFlush:
		n.store.InvalidateAll()
		sh.dataSeq = nt.Seq
	case cache.NoticeWatermark:
		wm := nt.Watermark
		sh.wm.Store(&wm)
	}
}

// noticeSilence is how long the subscriber waits for a notice before it
// pings: the invalidator's heartbeats come every HEARTBEAT_INTERVAL, so a
// silent connection may be a dead one (the near cache stops serving on its
// own once the last watermark is older than MAX_STALENESS).
const noticeSilence = 3 * time.Second

// follow subscribes to c's notices until ctx ends, resubscribing after any
// failure.
func (n *near) follow(ctx context.Context, c *cache.Cache, log *zap.Logger) {
	ps := c.Notices(ctx)
	// Closing unblocks a receive at once when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		if stop() {
			_ = ps.Close()
		}
	}()
	failing := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, noticeSilence)
		var ne interface{ Timeout() bool }
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			_ = ps.Ping(ctx)
			continue
		case err != nil:
			n.lost("disconnected")
			if !failing {
				log.Warn("near cache: the notice channel failed; validations go to Redis until it is back", zap.Error(err))
				failing = true
			}
			select { // go-redis reconnects at the next receive
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			k, ok := c.NoticeShard(m.Channel)
			if m.Kind == "subscribe" && ok {
				n.subscribed(k)
				if failing {
					log.Info("near cache: subscribed to the notice channel again")
					failing = false
				}
			}
		case *redis.Message:
			k, ok := c.NoticeShard(m.Channel)
			if !ok {
				continue
			}
			nt, err := cache.ParseNotice(m.Payload)
			if err != nil {
				n.lostShard(k, "bad_notice")
				log.Error("near cache: a notice could not be read; emptied until the channel is subscribed again (is another process publishing on it?)",
					zap.String("channel", m.Channel), zap.Error(err))
				_ = ps.Unsubscribe(ctx, m.Channel)
				_ = ps.Subscribe(ctx, m.Channel)
				continue
			}
			n.notice(k, nt)
		}
	}
}
