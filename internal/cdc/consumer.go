// Package cdc is the replication consumer of the invalidator: it elects one
// active process with a Postgres advisory lock, tails the sessions table's
// logical replication (pgoutput v1) from a permanent slot, turns each change
// into cache effects, applies them to Redis and acknowledges a WAL position
// only once everything before it is in Redis.
//
// Two positions are kept apart: what was received from the server, and what
// is durably applied. Only the second is ever reported as flushed.
package cdc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
)

// Cache is what the consumer needs of the cache; *cache.Cache satisfies it.
type Cache interface {
	Apply(ctx context.Context, ops []cache.Op) (int, error)
	Flush(ctx context.Context) (old string, err error)
	PurgeGeneration(ctx context.Context, gen string) (int, error)
	SetWatermark(ctx context.Context, t time.Time) error
	FlushIfServerChanged(ctx context.Context) (bool, error)
	MarkFlushPending(ctx context.Context) error
	FlushPending(ctx context.Context) (bool, error)
}

// Sentinel errors a caller or the health report may act on.
var (
	// ErrPublicationMissing: the publication does not exist; run `validator migrate`.
	ErrPublicationMissing = errors.New("publication missing")
	// ErrSlotLost: the slot was dropped or invalidated; changes were missed.
	ErrSlotLost = errors.New("replication slot lost")
)

// Options configure a Consumer.
type Options struct {
	DatabaseURL       string
	Slot              string
	Publication       string
	Table             string        // default "sessions"
	HeartbeatInterval time.Duration // default 1s
	StandbyPoll       time.Duration // default 1s
	StatusInterval    time.Duration // standby status updates; default 2s
	ShutdownTimeout   time.Duration // how long queued effects may take to apply on shutdown; default 10s
	BatchSize         int           // ops per Redis batch; default 1000
	MaxBackoff        time.Duration // reconnect backoff cap; default 5s
	Logger            *zap.Logger
	Metrics           *Metrics
	Now               func() time.Time
}

// Consumer is the invalidator's replication consumer.
type Consumer struct {
	cache Cache
	o     Options
	log   *zap.Logger
	m     *Metrics
	st    status
	bg    sync.WaitGroup // background purges of flushed generations
	// seenSlot: the slot existed while this process ran, so finding it
	// missing later means it was lost rather than never created.
	seenSlot atomic.Bool
	// pool is the Run's normal connection pool (heartbeats, visibility).
	pool *pgxpool.Pool
}

// New returns a Consumer; zero options take the defaults.
func New(c Cache, o Options) *Consumer {
	if o.Table == "" {
		o.Table = "sessions"
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.StandbyPoll <= 0 {
		o.StandbyPoll = time.Second
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 2 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c2 := &Consumer{cache: c, o: o, log: o.Logger, m: o.Metrics}
	c2.st.s = Status{Role: RoleStandby, Slot: o.Slot, Publication: o.Publication, LagBytes: -1}
	c2.m.setRole(RoleStandby)
	return c2
}

// Status returns a snapshot for health reporting.
func (c *Consumer) Status() Status { return c.st.get() }

func (c *Consumer) setErr(err error) {
	c.st.update(func(s *Status) {
		if err == nil {
			s.LastError = ""
		} else {
			s.LastError = err.Error()
		}
	})
}

// LockKey is the advisory lock key that elects the active consumer of slot.
func LockKey(slot string) int64 {
	h := fnv.New64a()
	h.Write([]byte("sessionguard.invalidator/" + slot))
	return int64(h.Sum64())
}

// Run elects, streams and applies until ctx is done. On ctx's end it stops
// reading, applies what is queued (within ShutdownTimeout), acknowledges what
// was applied and returns nil.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.bg.Wait()
	pool, err := pgxpool.New(ctx, c.o.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open postgres pool: %w", err)
	}
	defer pool.Close()
	c.pool = pool
	for ctx.Err() == nil {
		active, err := c.elect(ctx, pool)
		if err != nil {
			c.setErr(err)
			c.log.Warn("leader election failed", zap.Error(err))
		}
		if !active {
			sleep(ctx, c.o.StandbyPoll)
		}
	}
	return nil
}

// elect tries once to take the lock; as leader it streams until the lock
// connection fails or ctx ends.
func (c *Consumer) elect(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	lockCfg, err := pgx.ParseConfig(c.o.DatabaseURL)
	if err != nil {
		return false, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	// The lock connection is pinged every second; if the network between us
	// and Postgres breaks, the server ends the session (and frees the lock
	// for a standby) after this long instead of waiting for TCP to give up.
	lockCfg.RuntimeParams["idle_session_timeout"] = "10s"
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	lockConn, err := pgx.ConnectConfig(cctx, lockCfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect for leader lock: %w", err)
	}
	defer lockConn.Close(context.WithoutCancel(ctx))
	var got bool
	cctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	err = lockConn.QueryRow(cctx, `SELECT pg_try_advisory_lock($1)`, LockKey(c.o.Slot)).Scan(&got)
	cancel()
	if err != nil {
		return false, fmt.Errorf("try leader lock: %w", err)
	}
	c.setErr(nil)
	if !got {
		return false, nil
	}
	c.log.Info("became the active invalidator", zap.String("slot", c.o.Slot))
	c.st.update(func(s *Status) { s.Role, s.ActiveSince = RoleActive, c.o.Now() })
	c.m.setRole(RoleActive)
	defer func() {
		c.st.update(func(s *Status) { s.Role, s.Streaming = RoleStandby, false })
		c.m.setRole(RoleStandby)
		c.m.setStreaming(false)
	}()

	leadCtx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.watchLock(leadCtx, lockConn, lost) }()
	go func() { defer wg.Done(); c.heartbeat(leadCtx, pool) }()
	c.lead(leadCtx)
	lost(nil)
	wg.Wait()
	if cause := context.Cause(leadCtx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		c.log.Error("lost leadership: stopped streaming", zap.Error(cause))
		return true, cause
	}
	return true, nil
}

// watchLock checks the lock connection every second: if it is gone the
// server has released the lock and another process may be streaming soon.
func (c *Consumer) watchLock(ctx context.Context, conn *pgx.Conn, lost context.CancelCauseFunc) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			lost(fmt.Errorf("leader lock connection failed: %w", err))
			return
		}
	}
}

// heartbeat emits a transactional logical message every HeartbeatInterval
// (its content is the send time) and refreshes the slot lag figures.
func (c *Consumer) heartbeat(ctx context.Context, pool *pgxpool.Pool) {
	t := time.NewTicker(c.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		sent := c.o.Now()
		_, err := pool.Exec(qctx, `SELECT pg_logical_emit_message(true, $1, $2::text)`,
			HeartbeatPrefix, strconv.FormatInt(sent.UnixMilli(), 10))
		if err != nil && ctx.Err() == nil {
			c.log.Warn("heartbeat failed", zap.Error(err))
		}
		var cur, confirmed pglogrepl.LSN
		var lag int64
		err = pool.QueryRow(qctx, `SELECT pg_current_wal_lsn()::text, confirmed_flush_lsn::text,
			pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
			FROM pg_replication_slots WHERE slot_name = $1`, c.o.Slot).Scan(&cur, &confirmed, &lag)
		cancel()
		if err != nil {
			continue
		}
		now := c.o.Now()
		c.st.update(func(s *Status) {
			s.ServerWAL, s.ConfirmedFlush, s.LagBytes = cur, confirmed, lag
			c.m.lag(lag, s.LagSeconds(now))
		})
	}
}

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

// replConfig builds the replication connection's config.
func (c *Consumer) replConfig() (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(c.o.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "sessionguard-invalidator"
	// pgoutput writes values with the walsender's output functions: pin
	// their formats so the decoder always reads ISO timestamps.
	// bytea_output too: 'escape' (set per database or role, say) would turn
	// every token_hash into an undecodable value and stall the stream.
	for k := range cfg.RuntimeParams {
		switch strings.ToLower(k) {
		case "datestyle", "timezone", "bytea_output":
			delete(cfg.RuntimeParams, k)
		}
	}
	cfg.RuntimeParams["DateStyle"] = "ISO"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["bytea_output"] = "hex"
	return cfg, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// query runs a simple SQL query on the replication connection.
func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][][]byte, error) {
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Rows, nil
}

// prepare checks the publication and the slot (creating or recreating it)
// and returns the position to start from.
func (c *Consumer) prepare(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	rows, err := query(ctx, conn, `SELECT 1 FROM pg_publication WHERE pubname = `+quoteLiteral(c.o.Publication))
	if err != nil {
		return 0, fmt.Errorf("check publication: %w", err)
	}
	if len(rows) == 0 {
		return 0, fmt.Errorf("%w: %q (run `validator migrate`)", ErrPublicationMissing, c.o.Publication)
	}
	// A flush owed by an earlier process (it created the slot and died before
	// flushing) comes first: the slot looks healthy, but changes from before
	// its consistent point never reached the cache.
	var pending bool
	if err := c.retry(ctx, "read pending cache flush", func(ctx context.Context) error {
		var err error
		pending, err = c.cache.FlushPending(ctx)
		return err
	}); err != nil {
		return 0, err
	}
	if pending {
		if err := c.flushRetry(ctx, "flush_pending"); err != nil {
			return 0, err
		}
		c.log.Warn("cache flushed: a previous invalidator created the slot but did not live to flush")
	}
	rows, err = query(ctx, conn, `SELECT coalesce(confirmed_flush_lsn::text, ''), coalesce(wal_status, ''), plugin
		FROM pg_replication_slots WHERE slot_name = `+quoteLiteral(c.o.Slot))
	if err != nil {
		return 0, fmt.Errorf("read slot: %w", err)
	}
	slot := pgx.Identifier{c.o.Slot}.Sanitize()
	if len(rows) == 1 {
		confirmed, walStatus, plugin := string(rows[0][0]), string(rows[0][1]), string(rows[0][2])
		if plugin != "pgoutput" {
			return 0, fmt.Errorf("slot %s uses plugin %q, want pgoutput: drop it or choose another REPLICATION_SLOT", c.o.Slot, plugin)
		}
		if walStatus != "lost" && confirmed != "" {
			lsn, err := pglogrepl.ParseLSN(confirmed)
			if err != nil {
				return 0, fmt.Errorf("slot confirmed_flush_lsn %q: %w", confirmed, err)
			}
			c.seenSlot.Store(true)
			return lsn, nil
		}
		c.slotLost(fmt.Errorf("%w: wal_status %q (max_slot_wal_keep_size exceeded?)", ErrSlotLost, walStatus))
		if err := pglogrepl.DropReplicationSlot(ctx, conn, slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return 0, fmt.Errorf("drop invalidated slot: %w", err)
		}
	} else if c.seenSlot.Load() {
		c.slotLost(fmt.Errorf("%w: slot %s no longer exists", ErrSlotLost, c.o.Slot))
	}
	if err := c.retry(ctx, "mark cache flush pending", c.cache.MarkFlushPending); err != nil {
		return 0, err
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		return 0, fmt.Errorf("create slot %s: %w", c.o.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("slot consistent point %q: %w", res.ConsistentPoint, err)
	}
	c.seenSlot.Store(true)
	// Changes before the slot's consistent point never reach us: whatever the
	// cache holds from before may be stale. Flush only now that the slot
	// exists, so that every fill after the flush reads a database state whose
	// later changes all come through the new slot.
	if err := c.flushRetry(ctx, "slot_created"); err != nil {
		return 0, err
	}
	c.log.Info("replication slot created; cache flushed", zap.String("slot", c.o.Slot), zap.Stringer("lsn", lsn))
	return lsn, nil
}

func (c *Consumer) slotLost(err error) {
	c.m.lostSlot()
	c.log.Error("REPLICATION SLOT LOST: changes were missed; flushing the cache and recreating the slot",
		zap.String("slot", c.o.Slot), zap.Error(err))
}

// isSlotGone reports server errors that mean the slot cannot serve us.
func isSlotGone(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Code == "42704" {
			return true
		}
		m := pe.Message
		return strings.Contains(m, "can no longer get changes") ||
			strings.Contains(m, "has already been removed") ||
			strings.Contains(m, "invalidated")
	}
	return false
}

// batch is one unit of work for the applier.
type batch struct {
	xid       uint32 // transaction of the ops and truncate
	ops       []cache.Op
	counts    [3]int // inserts, updates, deletes
	truncate  bool
	heartbeat time.Time     // non-zero: set the watermark after the ops
	commitEnd pglogrepl.LSN // non-zero: the transaction ending here is complete
}

// needsVisibility reports whether the batch may end sessions: its effects
// must not be applied before readers can see the transaction.
func (b *batch) needsVisibility() bool {
	if b.truncate {
		return true
	}
	for _, op := range b.ops {
		if op.HoldFills {
			return true
		}
	}
	return false
}

func (b *batch) empty() bool {
	return len(b.ops) == 0 && !b.truncate && b.heartbeat.IsZero() && b.commitEnd == 0
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

	start, err := c.prepare(ctx, conn)
	if err != nil {
		return err
	}
	err = pglogrepl.StartReplication(ctx, conn, pgx.Identifier{c.o.Slot}.Sanitize(), start,
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(pgx.Identifier{c.o.Publication}.Sanitize()),
			"messages 'true'",
		}})
	if err != nil {
		if isSlotGone(err) {
			c.seenSlot.Store(true)
		}
		return fmt.Errorf("start replication from %s: %w", start, err)
	}
	c.log.Info("streaming", zap.String("slot", c.o.Slot), zap.Stringer("from", start))
	c.setErr(nil)
	c.st.update(func(s *Status) { s.Streaming = true })
	c.m.setStreaming(true)
	return c.stream(ctx, conn, start)
}

// stream is the receive loop. It owns conn; the applier goroutine owns Redis.
func (c *Consumer) stream(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN) error {
	dec := NewDecoder(c.o.Table, c.o.Now)
	items := make(chan *batch, 4)
	var applied atomic.Uint64 // end LSN of the last transaction whose effects are in Redis
	applied.Store(uint64(start))
	// The applier outlives ctx so it can finish queued work on shutdown.
	actx, stopApplier := context.WithCancel(context.WithoutCancel(ctx))
	defer stopApplier()
	applierDone := make(chan struct{})
	go func() { defer close(applierDone); c.applier(actx, items, &applied, conn.PID()) }()

	var (
		received, serverWAL, acked pglogrepl.LSN
		idleWALEnd                 pglogrepl.LSN // keepalive position seen outside a transaction
		lastDispatched             = start       // end LSN of the last commit handed to the applier
		inTxn                      bool
		curXid                     uint32
		pending                    = &batch{}
		nextStatus                 = time.Now().Add(c.o.StatusInterval)
	)
	ackable := func() pglogrepl.LSN {
		a := pglogrepl.LSN(applied.Load())
		// Nothing in flight: positions past the last commit carry no change
		// of ours, so the slot may move on (a quiet table must not pin WAL).
		if !inTxn && pending.empty() && a >= lastDispatched && idleWALEnd > a {
			a = idleWALEnd
		}
		return max(a, acked)
	}
	sendStatus := func() error {
		acked = ackable()
		// Pass flush and apply explicitly: pglogrepl copies the write
		// position into zero fields, which would ack unapplied work.
		err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: max(received, acked), WALFlushPosition: acked, WALApplyPosition: acked})
		nextStatus = time.Now().Add(c.o.StatusInterval)
		c.st.update(func(s *Status) { s.Acked = acked })
		if err != nil {
			return fmt.Errorf("send standby status: %w", err)
		}
		return nil
	}
	dispatch := func(b *batch) error {
		for {
			wait := time.Until(nextStatus)
			t := time.NewTimer(max(wait, 0))
			select {
			case items <- b:
				t.Stop()
				return nil
			case <-t.C:
				// The applier is behind (Redis slow or down): keep the
				// server's wal_sender_timeout from firing meanwhile.
				if err := sendStatus(); err != nil {
					return err
				}
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	shutdown := func(cause error) error {
		close(items)
		select {
		case <-applierDone:
		case <-time.After(c.o.ShutdownTimeout):
			c.log.Warn("shutdown timeout: unapplied work will be replayed on restart")
			stopApplier()
			<-applierDone
		}
		_ = sendStatus()
		c.log.Info("replication stopped", zap.Stringer("acked", acked), zap.NamedError("cause", cause))
		return cause
	}

	for {
		if ctx.Err() != nil {
			return shutdown(nil)
		}
		if !time.Now().Before(nextStatus) {
			if err := sendStatus(); err != nil {
				return shutdown(err)
			}
		}
		rctx, cancel := context.WithDeadline(ctx, nextStatus)
		raw, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return shutdown(nil)
			}
			if pgconn.Timeout(err) {
				continue
			}
			return shutdown(fmt.Errorf("receive: %w", err))
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return shutdown(fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg)))
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					c.m.decodeError()
					return shutdown(fmt.Errorf("%w: keepalive: %v", ErrMalformed, err))
				}
				serverWAL = max(serverWAL, ka.ServerWALEnd)
				if !inTxn {
					idleWALEnd = max(idleWALEnd, ka.ServerWALEnd)
				}
				if ka.ReplyRequested {
					if err := sendStatus(); err != nil {
						return shutdown(err)
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					c.m.decodeError()
					return shutdown(fmt.Errorf("%w: xlogdata: %v", ErrMalformed, err))
				}
				// Relation messages carry WALStart 0: never move backwards.
				received = max(received, xld.WALStart)
				serverWAL = max(serverWAL, xld.ServerWALEnd)
				ev, err := dec.Decode(xld.WALData)
				if err != nil {
					c.m.decodeError()
					return shutdown(fmt.Errorf("decode at %s: %w", xld.WALStart, err))
				}
				switch ev.Kind {
				case KindBegin:
					inTxn = true
					curXid = ev.Xid
					pending.xid = curXid
				case KindRow:
					pending.ops = append(pending.ops, ev.Ops...)
					switch ev.Op {
					case OpInsert:
						pending.counts[0]++
					case OpUpdate:
						pending.counts[1]++
					case OpDelete:
						pending.counts[2]++
					}
					// pgoutput v1 sends a transaction only after it
					// committed, so a large one may be applied in pieces
					// (bounded memory); the ack still waits for its commit.
					if len(pending.ops) >= c.o.BatchSize {
						if err := dispatch(pending); err != nil {
							return shutdown(nil)
						}
						pending = &batch{xid: curXid}
					}
				case KindTruncate:
					if !pending.empty() {
						if err := dispatch(pending); err != nil {
							return shutdown(nil)
						}
					}
					pending = &batch{truncate: true, xid: curXid}
				case KindHeartbeat:
					if ev.Heartbeat.After(pending.heartbeat) {
						pending.heartbeat = ev.Heartbeat
					}
				case KindCommit:
					pending.commitEnd = ev.EndLSN
					if err := dispatch(pending); err != nil {
						return shutdown(nil)
					}
					pending = &batch{}
					inTxn = false
					lastDispatched = max(lastDispatched, ev.EndLSN)
				}
			}
		}
	}
}

// applier applies batches in order. Redis errors are retried with backoff
// for as long as it takes: nothing is acknowledged meanwhile.
func (c *Consumer) applier(ctx context.Context, items <-chan *batch, applied *atomic.Uint64, walsenderPID uint32) {
	// A Redis restarted from an older snapshot may hold entries whose drops
	// were already acknowledged: check before trusting it (and before every
	// watermark, since the watermark is what lets validators use the cache).
	if err := c.retry(ctx, "check redis server", func(ctx context.Context) error {
		flushed, err := c.cache.FlushIfServerChanged(ctx)
		if flushed {
			c.m.flushed("redis_restart")
			c.log.Info("redis server changed (restart or first run): cache flushed")
		}
		return err
	}); err != nil {
		return
	}
	var (
		visibleXid uint32
		seen       snapshot // the last snapshot read: xids visible in it need no query
	)
	for b := range items {
		t := time.Now()
		if b.xid != 0 && b.xid != visibleXid && b.needsVisibility() {
			if err := c.waitVisible(ctx, b.xid, walsenderPID, &seen); err != nil {
				return
			}
			visibleXid = b.xid
		}
		if len(b.ops) > 0 {
			if err := c.retry(ctx, "apply", func(ctx context.Context) error {
				_, err := c.cache.Apply(ctx, b.ops)
				return err
			}); err != nil {
				return
			}
		}
		if b.truncate {
			if err := c.flushRetry(ctx, "truncate"); err != nil {
				return
			}
			c.log.Info("sessions truncated: cache flushed")
		}
		if !b.heartbeat.IsZero() {
			if err := c.retry(ctx, "set watermark", func(ctx context.Context) error {
				flushed, err := c.cache.FlushIfServerChanged(ctx)
				if err != nil {
					return err
				}
				if flushed {
					c.m.flushed("redis_restart")
					c.log.Warn("redis server changed under us (restart or failover): cache flushed")
				}
				return c.cache.SetWatermark(ctx, b.heartbeat)
			}); err != nil {
				return
			}
		}
		if len(b.ops) > 0 {
			c.m.applied(time.Since(t))
		}
		if b.commitEnd != 0 && pglogrepl.LSN(applied.Load()) < b.commitEnd {
			applied.Store(uint64(b.commitEnd))
		}
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
			if b.heartbeat.After(s.Watermark) {
				s.Watermark = b.heartbeat
			}
		})
	}
}

// flushRetry empties the cache namespace and purges the old generation in
// the background.
func (c *Consumer) flushRetry(ctx context.Context, reason string) error {
	var old string
	err := c.retry(ctx, "flush cache", func(ctx context.Context) error {
		var err error
		old, err = c.cache.Flush(ctx)
		return err
	})
	if err != nil {
		return err
	}
	c.m.flushed(reason)
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		// Best effort, cut short by shutdown: the old keys expire by TTL.
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := c.cache.PurgeGeneration(pctx, old); err != nil && ctx.Err() == nil {
			c.log.Warn("purge of flushed cache generation failed (its keys expire by TTL)", zap.Error(err))
		}
	}()
	return nil
}

// waitVisible returns once transaction xid is visible to new snapshots, or
// with ctx's error. Logical decoding hands out a commit as soon as its WAL is
// flushed, a moment before the committing backend makes it visible (with a
// synchronous standby, not until the standby answers). Dropping an entry in
// that moment would let a validator that misses read the old row and refill
// it after the drop, for good: no later event names that row. Nothing is
// acknowledged meanwhile, and the watermark stands still.
//
// One exception: if this invalidator's own walsender is a synchronous
// standby (synchronous_standby_names = '*', say), the commit waits for our
// acknowledgement, which waits for the apply: waiting here would stop every
// writer. Then it applies at once, with the fill hold as the only guard, and
// says so loudly.
func (c *Consumer) waitVisible(ctx context.Context, xid uint32, walsenderPID uint32, seen *snapshot) error {
	// Visibility only grows: visible in the last snapshot read is visible now.
	if c.pool == nil || (seen.xmax != 0 && seen.visible(xid)) {
		return nil
	}
	start := time.Now()
	wait, nextSyncCheck := 100*time.Microsecond, 500*time.Millisecond
	for {
		var text string
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.pool.QueryRow(qctx, `SELECT pg_current_snapshot()::text`).Scan(&text)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			var snap snapshot
			if snap, err = parseSnapshot(text); err == nil {
				*seen = snap
				if snap.visible(xid) {
					return nil
				}
			}
		}
		if err != nil {
			c.log.Warn("cannot check that a transaction is visible; retrying (nothing is applied or acknowledged meanwhile)",
				zap.Uint32("xid", xid), zap.Error(err))
			wait = max(wait, 100*time.Millisecond)
		}
		if waited := time.Since(start); waited >= nextSyncCheck {
			nextSyncCheck = waited + 5*time.Second
			if c.isSyncStandby(ctx, walsenderPID) {
				c.log.Error("this invalidator is a synchronous standby (it matches synchronous_standby_names): commits wait for it, so it cannot wait for them to become visible; applying at once. Remove application_name sessionguard-invalidator from synchronous_standby_names",
					zap.Uint32("xid", xid))
				return nil
			}
			c.log.Warn("a committed transaction is not visible yet (a synchronous standby not answering?); waiting before applying it",
				zap.Uint32("xid", xid), zap.Duration("waited", waited))
		}
		sleep(ctx, wait)
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// isSyncStandby reports whether the walsender serving us takes part in
// synchronous replication.
func (c *Consumer) isSyncStandby(ctx context.Context, pid uint32) bool {
	var state string
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := c.pool.QueryRow(qctx, `SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE pid = $1), '')`, int64(pid)).Scan(&state)
	return err == nil && (state == "sync" || state == "quorum" || state == "potential")
}

// retry runs fn until it succeeds or ctx ends, with capped backoff.
func (c *Consumer) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			c.st.update(func(s *Status) { s.RedisFailing = false })
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.redisError()
		c.st.update(func(s *Status) { s.RedisFailing = true })
		c.log.Warn("redis call failed; retrying (nothing is acknowledged meanwhile)",
			zap.String("op", what), zap.Error(err), zap.Duration("backoff", backoff))
		sleep(ctx, backoff)
		backoff = min(backoff*2, 2*time.Second)
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
