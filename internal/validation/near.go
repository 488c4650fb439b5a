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
	store *otter.Cache[session.Hash, *cache.Entry]
	m     *Metrics

	mu      sync.Mutex
	synced  bool   // subscribed: notices arrive from a known point on
	seq     uint64 // last notice applied (0: none since subscribing)
	dataSeq uint64 // seq of the last drop or flush
	epoch   uint64 // bumped by every reset

	wm     atomic.Pointer[cache.Watermark] // last watermark notice; nil: none since the last reset
	offset atomic.Int64                    // Redis's clock minus ours (ns), from the last lookup
}

// ticket is what a validator knew before a Redis lookup: put stores the
// entry it read only if no drop or flush (or reset) came in between.
type ticket struct {
	epoch, dataSeq uint64
	ok             bool
}

func newNear(size int, ttl, negativeTTL time.Duration, m *Metrics) *near {
	n := &near{m: m}
	n.store = otter.Must(&otter.Options[session.Hash, *cache.Entry]{
		MaximumSize: size,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[session.Hash, *cache.Entry]) time.Duration {
			if e.Value.Negative {
				return negativeTTL
			}
			return ttl
		}),
	})
	m.nearSize(func() float64 { return float64(n.store.EstimatedSize()) })
	return n
}

// get returns h's entry and the watermark it may be served under, with
// Redis's clock estimated from ours.
func (n *near) get(h session.Hash) (*cache.Entry, cache.Watermark, time.Time, bool) {
	wm := n.wm.Load()
	if wm == nil {
		return nil, cache.Watermark{}, time.Time{}, false
	}
	e, ok := n.store.GetIfPresent(h)
	if !ok {
		return nil, cache.Watermark{}, time.Time{}, false
	}
	return e, *wm, time.Now().Add(time.Duration(n.offset.Load())), true
}

// clock records Redis's clock as a lookup saw it.
func (n *near) clock(redisNow time.Time) {
	n.offset.Store(int64(redisNow.Sub(time.Now())))
}

func (n *near) begin() ticket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return ticket{epoch: n.epoch, dataSeq: n.dataSeq, ok: n.synced}
}

func (n *near) put(t ticket, h session.Hash, e *cache.Entry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t.ok && n.synced && t.epoch == n.epoch && t.dataSeq == n.dataSeq {
		n.store.Set(h, e)
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
			sleep(ctx, 100*time.Millisecond)
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

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
