package cdc

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
)

// applier applies batches in order. Redis errors are retried with backoff
// for as long as it takes: nothing is acknowledged meanwhile.
type applier struct {
	c            *Consumer
	walsenderPID uint32
	// applied is the end LSN of the last transaction whose effects are in
	// Redis: all the receive loop may acknowledge.
	applied atomic.Uint64
	// ackNow asks the receive loop to send a status update at once, and
	// syncMode tells it to look for that request often: both only while
	// this process is a synchronous standby (see commitDeferred).
	ackNow, syncMode atomic.Bool
	vis              visibility
	// redo holds the effects of a transaction applied before it was
	// visible (synchronous standby), to apply again once it is.
	redo      []cache.Op
	redoFlush string
	redoXid   uint32
}

func (a *applier) run(ctx context.Context, items <-chan *batch) {
	c := a.c
	// A Redis restarted from an older snapshot may hold entries whose drops
	// were already acknowledged: check before trusting it. Every watermark
	// checks again, inside its own script (cache.Vouch), since the watermark
	// is what lets validators use the cache.
	if err := c.retry(ctx, "check redis server", a.checkServer); err != nil {
		return
	}
	for b := range items {
		if err := a.apply(ctx, b); err != nil {
			return
		}
	}
}

func (a *applier) checkServer(ctx context.Context) error {
	flushed, err := a.c.cache.FlushIfServerChanged(ctx)
	if flushed {
		a.c.flushed(ctx, "redis_restart", "")
		a.c.log.Warn("redis server changed (restart, failover or first run): cache flushed")
	}
	return err
}

// apply applies one batch; it fails only when ctx ends.
func (a *applier) apply(ctx context.Context, b *batch) error {
	c := a.c
	t := time.Now()
	// deferred: applied before visible, so applied again once visible. Every
	// later batch of that transaction is too, whatever it holds: its commit
	// batch must send the ack and do the second apply.
	deferred := b.xid != 0 && a.redoXid == b.xid
	check := !deferred && b.xid != 0 && b.needsVisibility() && a.vis.visibleXid != b.xid
	// Ops that hold fills go to Redis before their transaction is known to
	// be visible, so a revocation reaches validators without waiting for
	// that check. Their holds refuse fills meanwhile, but a hold can be
	// lost (evicted, or deleted by a later op of the same transaction on
	// the same key), and a fill of the old row would then stay: so once
	// the check passes, before the transaction is acknowledged or anything
	// after it applied, the ops are applied again. A flush holds nothing,
	// so it waits for the check.
	early := check && b.flush == ""
	if early {
		if err := a.effects(ctx, b.ops, ""); err != nil {
			return err
		}
	}
	if check {
		sync, err := a.waitVisible(ctx, b.xid, true)
		if err != nil {
			return err
		}
		if sync {
			deferred, a.redoXid, a.redo, a.redoFlush = true, b.xid, nil, ""
		}
	}
	if !early || !deferred {
		ops := b.ops
		if !deferred { // visible, or holding nothing
			ops = cache.Settled(ops)
		}
		if err := a.effects(ctx, ops, b.flush); err != nil {
			return err
		}
	}
	if b.truncate {
		c.log.Info("sessions truncated: cache flushed")
	}
	if deferred {
		a.redo = append(a.redo, b.ops...)
		if b.flush != "" {
			a.redoFlush = b.flush
		}
	}
	if deferred && b.commitEnd != 0 {
		if err := a.commitDeferred(ctx, b); err != nil {
			return err
		}
	} else {
		a.commit(b.commitEnd)
	}
	if b.heartbeat != nil {
		if err := a.setWatermark(ctx, b.heartbeat); err != nil {
			return err
		}
	}
	if len(b.ops) > 0 {
		c.m.applied(time.Since(t))
	}
	a.record(b)
	return nil
}

// commit records that the transaction ending at end (0: none) is applied,
// so the receive loop may acknowledge it; as a synchronous standby at once.
func (a *applier) commit(end pglogrepl.LSN) {
	if end == 0 || pglogrepl.LSN(a.applied.Load()) >= end {
		return
	}
	a.applied.Store(uint64(end))
	if a.syncMode.Load() {
		// Every commit waits for our acknowledgement: send it now.
		a.ackNow.Store(true)
	}
}

// commitDeferred finishes a transaction applied while this process is a
// synchronous standby: its commit waits for our acknowledgement, so the
// acknowledgement goes out at once, then the effects are applied again once
// the transaction is visible, before anything after it (a watermark) is. A
// validator that missed in between read the old row; the second apply
// removes what it filled. Acknowledged, the transaction is never replayed:
// a flush-pending mark covers the time until the second apply, so that the
// next invalidator flushes if this one dies meanwhile.
func (a *applier) commitDeferred(ctx context.Context, b *batch) error {
	c := a.c
	var mark string // "": a mark was there already, and stays
	if err := c.retry(ctx, "mark cache flush pending", func(ctx context.Context) error {
		var err error
		mark, err = c.cache.MarkFlushPendingIfNone(ctx)
		return err
	}); err != nil {
		return err
	}
	a.commit(b.commitEnd)
	a.ackNow.Store(true)
	if _, err := a.waitVisible(ctx, b.xid, false); err != nil {
		return err // the mark stays
	}
	ops, flush := cache.Settled(a.redo), a.redoFlush
	a.redo, a.redoFlush, a.redoXid = nil, "", 0
	if err := a.effects(ctx, ops, flush); err != nil {
		return err
	}
	if mark == "" {
		return nil
	}
	return c.retry(ctx, "clear pending cache flush", func(ctx context.Context) error {
		return c.cache.ClearFlushPending(ctx, mark)
	})
}

// effects applies ops, then flushes the cache when flush names a reason.
func (a *applier) effects(ctx context.Context, ops []cache.Op, flush string) error {
	if len(ops) > 0 {
		if err := a.c.retry(ctx, "apply", func(ctx context.Context) error {
			_, err := a.c.cache.Apply(ctx, ops)
			return err
		}); err != nil {
			return err
		}
	}
	if flush != "" {
		return a.c.flushRetry(ctx, flush, "")
	}
	return nil
}

// setWatermark moves the watermark to a verified heartbeat, after the flush
// it owes, if any (cache.Vouch decides and does both in one script).
func (a *applier) setWatermark(ctx context.Context, hb *heartbeat) error {
	c := a.c
	return c.retry(ctx, "set watermark", func(ctx context.Context) error {
		r, err := c.cache.Vouch(ctx, hb.vouch())
		if err != nil {
			return err
		}
		if r.Reason != "" {
			c.flushed(ctx, r.Reason, r.Old)
			c.log.Warn("cache flushed before the watermark moved", zap.String("reason", r.Reason), zap.String("source", hb.Source))
		}
		return nil
	})
}

// record counts what a batch applied.
func (a *applier) record(b *batch) {
	c := a.c
	ins, upd, del := b.counts[0], b.counts[1], b.counts[2]
	c.m.event(OpInsert, ins)
	c.m.event(OpUpdate, upd)
	c.m.event(OpDelete, del)
	now := c.o.Now()
	c.st.update(func(s *Status) {
		s.Inserts += uint64(ins)
		s.Updates += uint64(upd)
		s.Deletes += uint64(del)
		s.Applied += uint64(ins + upd + del)
		if ins+upd+del > 0 {
			s.LastEventAt = now
		}
		if b.truncate {
			s.Truncates++
			s.Applied++
			s.LastEventAt = now
		}
		if b.flush == "undecodable" {
			s.Undecodable++
		}
		if b.heartbeat != nil && b.heartbeat.At.After(s.Watermark) {
			s.Watermark = b.heartbeat.At
		}
	})
}
