package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
)

// errSchemaMoved ends a session whose decoder follows a sessions table that
// the search path no longer finds.
var errSchemaMoved = errors.New("the sessions table now resolves to another schema: reconnecting to follow it")

// syncPoll is how often the receive loop looks for an ack the applier wants
// sent at once, while this process is a synchronous standby.
const syncPoll = 5 * time.Millisecond

// lead runs replication sessions, reconnecting with backoff, until ctx ends.
func (c *Consumer) lead(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := c.o.Now()
		err := c.session(ctx)
		c.st.update(func(s *Status) { s.Streaming = false })
		c.m.setStreaming(false)
		if ctx.Err() != nil {
			return
		}
		c.setErr(err)
		c.m.reconnect()
		if errors.Is(err, ErrPublicationMissing) {
			c.log.Error("publication missing: run `validator migrate` to create it",
				zap.String("publication", c.o.Publication))
		} else {
			c.log.Warn("replication session ended; reconnecting", zap.Error(err), zap.Duration("backoff", backoff))
		}
		if c.o.Now().Sub(start) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		sleep(ctx, backoff)
		backoff = min(backoff*2, c.o.MaxBackoff)
	}
}

// session runs one replication connection until it fails or ctx ends.
func (c *Consumer) session(ctx context.Context) error {
	cfg, err := c.replConfig()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgconn.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("replication connect: %w", err)
	}
	defer conn.Close(context.Background())

	schema, err := tableSchema(ctx, conn, c.o.Table)
	if err != nil {
		return err
	}
	c.schema.Store(&schema)
	c.wantSchema.Store(&schema) // until a heartbeat finds otherwise
	c.pgVersion.Store(0)        // read again: the server may have been upgraded
	start, err := c.prepare(ctx, conn)
	if err != nil {
		return err
	}
	err = pglogrepl.StartReplication(ctx, conn, pgx.Identifier{c.o.Slot}.Sanitize(), start,
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + pg.QuoteLiteral(pgx.Identifier{c.o.Publication}.Sanitize()),
			"messages 'true'",
		}})
	if err != nil {
		if isSlotGone(err) {
			c.seenSlot.Store(true)
		}
		return fmt.Errorf("start replication from %s: %w", start, err)
	}
	c.log.Info("streaming", zap.String("slot", c.o.Slot), zap.Stringer("from", start), zap.String("schema", schema))
	c.setErr(nil)
	c.st.update(func(s *Status) { s.Streaming = true })
	c.m.setStreaming(true)
	c.warnUnlimitedWAL(ctx)
	r := c.newReceiver(schema, start, conn.PID(), func(ctx context.Context, u pglogrepl.StandbyStatusUpdate) error {
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, u)
	})
	return r.run(ctx, func(ctx context.Context) (pgproto3.BackendMessage, error) { return conn.ReceiveMessage(ctx) })
}

// receiver is the receive loop of one replication session. It owns the
// connection; its applier goroutine owns Redis. It acknowledges only what
// the applier has applied: a commit's end once its effects are in Redis, and
// a keepalive's position only while nothing is in flight.
type receiver struct {
	c        *Consumer
	dec      *Decoder
	schema   string
	send     func(context.Context, pglogrepl.StandbyStatusUpdate) error
	items    chan *batch
	applier  *applier
	done     chan struct{} // closed when the applier has stopped
	stopAppl context.CancelFunc

	received, serverWAL, acked pglogrepl.LSN
	idleWALEnd                 pglogrepl.LSN // keepalive position seen outside a transaction
	lastDispatched             pglogrepl.LSN // end LSN of the last commit handed to the applier
	inTxn                      bool
	xid                        uint32
	pending                    *batch
	nextStatus                 time.Time
	lastForeign                time.Time // last log line about a foreign heartbeat
}

// newReceiver starts the applier; run (or shutdown) stops it.
func (c *Consumer) newReceiver(schema string, start pglogrepl.LSN, walsenderPID uint32,
	send func(context.Context, pglogrepl.StandbyStatusUpdate) error) *receiver {
	r := &receiver{c: c, dec: NewDecoder(c.o.Table, schema, c.o.Table.Relation()), schema: schema, send: send,
		items: make(chan *batch, 4), done: make(chan struct{}),
		lastDispatched: start, pending: &batch{}, nextStatus: time.Now().Add(c.o.StatusInterval)}
	r.applier = &applier{c: c, walsenderPID: walsenderPID}
	r.applier.applied.Store(uint64(start))
	return r
}

// startApplier runs the applier; it outlives ctx so that it can finish
// queued work on shutdown.
func (r *receiver) startApplier(ctx context.Context) {
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stopAppl = stop
	go func() { defer close(r.done); r.applier.run(actx, r.items) }()
}

// run is the receive loop.
func (r *receiver) run(ctx context.Context, receive func(context.Context) (pgproto3.BackendMessage, error)) error {
	r.startApplier(ctx)
	defer r.stopAppl()
	var rctx deadlineCtx
	defer rctx.stop()
	for {
		if ctx.Err() != nil {
			return r.shutdown(ctx, nil)
		}
		if w := r.c.wantSchema.Load(); w != nil && *w != r.schema {
			return r.shutdown(ctx, errSchemaMoved)
		}
		if r.applier.ackNow.Swap(false) || !time.Now().Before(r.nextStatus) {
			if err := r.sendStatus(ctx); err != nil {
				return r.shutdown(ctx, err)
			}
		}
		raw, err := receive(rctx.at(ctx, r.wake()))
		if err != nil {
			if ctx.Err() != nil {
				return r.shutdown(ctx, nil)
			}
			if pgconn.Timeout(err) {
				continue
			}
			return r.shutdown(ctx, fmt.Errorf("receive: %w", err))
		}
		if err := r.handle(ctx, raw); err != nil {
			return r.shutdown(ctx, err)
		}
	}
}

// deadlineCtx is the receive loop's context: one per deadline, not one per
// message (a flood brings a message every few microseconds, and a context
// with a deadline costs a timer and allocations).
type deadlineCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
	when   time.Time
}

// at returns a context of parent that ends at when.
func (d *deadlineCtx) at(parent context.Context, when time.Time) context.Context {
	if d.ctx == nil || !when.Equal(d.when) || d.ctx.Err() != nil {
		d.stop()
		d.ctx, d.cancel = context.WithDeadline(parent, when)
		d.when = when
	}
	return d.ctx
}

func (d *deadlineCtx) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

// wake is when the loop must look up from receiving: the next status
// update, or soon while the applier may want an ack sent at once.
func (r *receiver) wake() time.Time {
	if soon := time.Now().Add(syncPoll); r.applier.syncMode.Load() && soon.Before(r.nextStatus) {
		return soon
	}
	return r.nextStatus
}

// handle processes one message from the server.
func (r *receiver) handle(ctx context.Context, raw pgproto3.BackendMessage) error {
	switch msg := raw.(type) {
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return nil
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				r.c.m.decodeError()
				return fmt.Errorf("%w: keepalive: %v", ErrMalformed, err)
			}
			r.keepalive(ka.ServerWALEnd)
			if ka.ReplyRequested {
				return r.sendStatus(ctx)
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				r.c.m.decodeError()
				return fmt.Errorf("%w: xlogdata: %v", ErrMalformed, err)
			}
			return r.xlogData(ctx, xld.WALStart, xld.ServerWALEnd, xld.WALData)
		}
	}
	return nil
}

func (r *receiver) keepalive(serverWALEnd pglogrepl.LSN) {
	r.serverWAL = max(r.serverWAL, serverWALEnd)
	if !r.inTxn {
		r.idleWALEnd = max(r.idleWALEnd, serverWALEnd)
	}
}

// xlogData decodes one pgoutput message and queues its effects.
func (r *receiver) xlogData(ctx context.Context, walStart, serverWALEnd pglogrepl.LSN, data []byte) error {
	// Relation messages carry WALStart 0: never move backwards.
	r.received = max(r.received, walStart)
	r.serverWAL = max(r.serverWAL, serverWALEnd)
	ev, err := r.dec.Decode(data)
	if err != nil {
		if len(data) > 0 && (data[0] == 'B' || data[0] == 'C') {
			// Transaction boundaries cannot be flushed away: without
			// them nothing after is known to be complete or visible.
			r.c.m.decodeError()
			return fmt.Errorf("decode at %s: %w", walStart, err)
		}
		return r.poison(ctx, walStart, err)
	}
	switch ev.Kind {
	case KindBegin:
		r.inTxn, r.xid = true, ev.Xid
		r.pending.xid = ev.Xid
	case KindRow:
		r.pending.ops = append(r.pending.ops, Effects(ev.Change, r.c.o.Now())...)
		r.pending.count(ev.Change.Op)
		// pgoutput v1 sends a transaction only after it committed, so a
		// large one may be applied in pieces (bounded memory); the ack
		// still waits for its commit.
		if len(r.pending.ops) >= r.c.o.BatchSize {
			if err := r.dispatch(ctx, r.pending); err != nil {
				return err
			}
			r.pending = &batch{xid: r.xid}
		}
	case KindTruncate:
		r.pending.flush, r.pending.truncate = "truncate", true
	case KindMessage:
		r.message(ev.Prefix, ev.Content)
	case KindCommit:
		r.pending.commitEnd = ev.EndLSN
		if err := r.dispatch(ctx, r.pending); err != nil {
			return err
		}
		r.pending, r.inTxn = &batch{}, false
		r.lastDispatched = max(r.lastDispatched, ev.EndLSN)
	}
	return nil
}

// poison handles a message that cannot be decoded the one way that is always
// safe: the cache is flushed (in order, once the transaction is visible) and
// the stream moves on, so the slot keeps advancing.
func (r *receiver) poison(ctx context.Context, at pglogrepl.LSN, err error) error {
	r.c.m.decodeError()
	r.c.log.Error("undecodable change in the replication stream: flushing the cache and moving on",
		zap.Stringer("lsn", at), zap.Error(err))
	r.pending.flush = "undecodable"
	if r.inTxn {
		return nil
	}
	b := r.pending
	r.pending = &batch{}
	return r.dispatch(ctx, b)
}

// message takes a heartbeat signed by this process; any other message with
// its prefix is counted and ignored.
func (r *receiver) message(prefix string, content []byte) {
	if prefix != HeartbeatPrefix {
		return
	}
	hb, ok := verify(r.c.key[:], content)
	if !ok {
		r.c.m.foreignHeartbeat()
		r.c.st.update(func(s *Status) { s.ForeignHeartbeats++ })
		if time.Since(r.lastForeign) > time.Minute {
			r.lastForeign = time.Now()
			r.c.log.Warn("ignored a heartbeat this process did not send (another invalidator's, an old one replayed, or forged with pg_logical_emit_message); `validator migrate -revoke-public-emit-message` stops other roles from emitting them")
		}
		return
	}
	if r.pending.heartbeat == nil || hb.At.After(r.pending.heartbeat.At) {
		r.pending.heartbeat = &hb
	}
}

// ackable is the position that may be reported as flushed.
func (r *receiver) ackable() pglogrepl.LSN {
	a := pglogrepl.LSN(r.applier.applied.Load())
	// Nothing in flight: positions past the last commit carry no change of
	// ours, so the slot may move on (a quiet table must not pin WAL).
	if !r.inTxn && r.pending.empty() && a >= r.lastDispatched && r.idleWALEnd > a {
		a = r.idleWALEnd
	}
	return max(a, r.acked)
}

func (r *receiver) sendStatus(ctx context.Context) error {
	r.acked = r.ackable()
	// Pass flush and apply explicitly: pglogrepl copies the write position
	// into zero fields, which would ack unapplied work.
	err := r.send(ctx, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(r.received, r.acked), WALFlushPosition: r.acked, WALApplyPosition: r.acked})
	r.nextStatus = time.Now().Add(r.c.o.StatusInterval)
	acked := r.acked
	r.c.st.update(func(s *Status) { s.Acked = acked })
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// dispatch hands b to the applier, answering the server meanwhile.
func (r *receiver) dispatch(ctx context.Context, b *batch) error {
	for {
		t := time.NewTimer(max(time.Until(r.wake()), 0))
		select {
		case r.items <- b:
			t.Stop()
			return nil
		case <-t.C:
			// The applier is behind (Redis slow or down, or waiting for a
			// commit to become visible): keep the server's
			// wal_sender_timeout from firing, and send an ack it wants.
			if r.applier.ackNow.Swap(false) || !time.Now().Before(r.nextStatus) {
				if err := r.sendStatus(ctx); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// shutdown stops the applier once it has applied what is queued (within
// ShutdownTimeout), acknowledges what was applied and returns cause.
func (r *receiver) shutdown(ctx context.Context, cause error) error {
	close(r.items)
	deadline := time.After(r.c.o.ShutdownTimeout)
	poll := time.NewTicker(syncPoll)
	defer poll.Stop()
wait:
	for {
		select {
		case <-r.done:
			break wait
		case <-poll.C:
			// A synchronous standby's applier may be waiting for a commit
			// that waits for our acknowledgement.
			if r.applier.ackNow.Swap(false) {
				_ = r.sendStatus(context.WithoutCancel(ctx))
			}
		case <-deadline:
			r.c.log.Warn("shutdown timeout: unapplied work will be replayed on restart")
			r.stopAppl()
			<-r.done
			break wait
		}
	}
	_ = r.sendStatus(context.WithoutCancel(ctx))
	r.c.log.Info("replication stopped", zap.Stringer("acked", r.acked), zap.NamedError("cause", cause))
	return cause
}

// batch is one unit of work for the applier.
type batch struct {
	xid       uint32 // transaction of the ops
	ops       []cache.Op
	counts    [3]int     // inserts, updates, deletes
	flush     string     // non-empty: flush the cache after the ops, for this reason
	truncate  bool       // the flush is a TRUNCATE of the table
	heartbeat *heartbeat // set the watermark after the ops
	commitEnd pglogrepl.LSN
}

// needsVisibility reports whether the batch may end sessions: its
// transaction must be visible to readers before it is acknowledged or
// anything after it applied (see applier.apply).
func (b *batch) needsVisibility() bool {
	if b.flush != "" {
		return true
	}
	for _, op := range b.ops {
		// An op by id holds its row's fills too (Op.ID).
		if op.HoldFills || op.ID != nil {
			return true
		}
	}
	return false
}

func (b *batch) empty() bool {
	return len(b.ops) == 0 && b.flush == "" && b.heartbeat == nil && b.commitEnd == 0
}

func (b *batch) count(op RowOp) {
	switch op {
	case OpInsert:
		b.counts[0]++
	case OpUpdate:
		b.counts[1]++
	case OpDelete:
		b.counts[2]++
	}
}
