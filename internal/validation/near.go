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
// Redis. It follows the cache's notice channel (cache.Notices): every drop,
// flush and watermark the invalidator's scripts made, numbered without gaps.
// An entry is served only while the last watermark received on the channel
// passes the same guard as a Redis hit (Distrust): the validator has then
// received every drop up to a watermark younger than MAX_STALENESS. A gap in
// the numbers, a lost subscription or a bad notice empties it.
type near struct {
	store *otter.Cache[session.Hash, nearEntry]
	m     *Metrics

	mu      sync.Mutex
	synced  bool   // subscribed: notices arrive from a known point on
	seq     uint64 // last notice applied (0: none since subscribing)
	dataSeq uint64 // seq of the last drop or flush
	epoch   uint64 // bumped by every reset

	wm    atomic.Pointer[cache.Watermark] // last watermark notice; nil: none since the last reset
	clock atomic.Pointer[redisClock]      // from the last lookup
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

func newNear(size int, ttl, negativeTTL time.Duration, m *Metrics) *near {
	n := &near{m: m}
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

// get returns h's entry and the watermark it may be served under, with
// Redis's clock as estimated from the last lookup.
func (n *near) get(h session.Hash) (*cache.Entry, cache.Watermark, time.Time, bool) {
	wm, clock := n.wm.Load(), n.clock.Load()
	if wm == nil || clock == nil {
		return nil, cache.Watermark{}, time.Time{}, false
	}
	e, ok := n.store.GetIfPresent(h)
	if !ok {
		return nil, cache.Watermark{}, time.Time{}, false
	}
	return e.e, *wm, clock.now(), true
}

// begin is called before a Redis lookup.
func (n *near) begin() ticket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return ticket{epoch: n.epoch, ok: n.synced}
}

// looked records the Redis clock a lookup sent at sent read.
func (n *near) looked(l cache.Lookup, sent time.Time) {
	n.clock.Store(&redisClock{redis: l.Now, sent: sent})
}

// put stores the entry a lookup read, when the near cache has applied no
// drop or flush that the Redis it read had not (dataSeq <= the lookup's
// notice number: a later one arrives after and drops the copy), and no
// reset came since begin. A Redis that is behind in its numbering (a
// promoted replica) is refused.
func (n *near) put(t ticket, l cache.Lookup) {
	if l.Entry == nil || l.EntryTTL <= 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if t.ok && n.synced && t.epoch == n.epoch && n.dataSeq <= l.Seq {
		n.store.Set(l.Hash, nearEntry{e: l.Entry, ttl: l.EntryTTL})
	}
}

// subscribed starts over from a new subscription: what was published
// before it may have been missed.
func (n *near) subscribed() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resetLocked("subscribed")
	n.synced = true
}

// lost empties the cache until the next subscription.
func (n *near) lost(reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resetLocked(reason)
}

func (n *near) resetLocked(reason string) {
	n.store.InvalidateAll()
	n.wm.Store(nil)
	n.synced, n.seq, n.dataSeq = false, 0, 0
	n.epoch++
	n.m.nearReset(reason)
}

// notice applies one notice, in channel order.
func (n *near) notice(nt cache.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.synced {
		return
	}
	if n.seq != 0 && nt.Seq != n.seq+1 {
		// A notice was missed (or the numbering restarted: Redis lost
		// its keys): anything held may be stale.
		n.resetLocked("gap")
		n.synced = true
	}
	n.seq = nt.Seq
	switch nt.Kind {
	case cache.NoticeDrop:
		for _, h := range nt.Hashes {
			n.store.Invalidate(h)
		}
		n.dataSeq = nt.Seq
	case cache.NoticeFlush:
		n.store.InvalidateAll()
		n.dataSeq = nt.Seq
	case cache.NoticeWatermark:
		wm := nt.Watermark
		n.wm.Store(&wm)
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
			if m.Kind == "subscribe" {
				n.subscribed()
				if failing {
					log.Info("near cache: subscribed to the notice channel again")
					failing = false
				}
			}
		case *redis.Message:
			nt, err := cache.ParseNotice(m.Payload)
			if err != nil {
				n.lost("bad_notice")
				log.Error("near cache: a notice could not be read; emptied until the next subscription (is another process publishing on the channel?)", zap.Error(err))
				_ = ps.Unsubscribe(ctx)
				_ = ps.Subscribe(ctx, m.Channel)
				continue
			}
			n.notice(nt)
		}
	}
}
