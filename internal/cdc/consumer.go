// Package cdc is the replication consumer of the invalidator: it elects one
// active process with a Postgres advisory lock, tails the sessions table's
// logical replication (pgoutput v1) from a permanent slot, turns each change
// into cache effects, applies them to Redis and acknowledges a WAL position
// only once everything before it is in Redis.
//
// Two positions are kept apart: what was received from the server, and what
// is durably applied. Only the second is ever reported as flushed.
//
// Files: election.go (who streams), heartbeat.go and source.go (what the
// watermark vouches for), slot.go (slot and replication session), stream.go
// (the receive loop and its ack rules), decode.go and policy.go (a message
// into a row change, a row change into cache effects), applier.go and
// visibility.go (effects into Redis, once readers can see them), lagmetrics.go
// (lag figures read at scrape time).
package cdc

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/source"
)

// Cache is what the consumer needs of the cache; *cache.Cache satisfies it.
type Cache interface {
	Apply(ctx context.Context, ops []cache.Op) (int, error)
	Flush(ctx context.Context, owed string) (old string, err error)
	PurgeGeneration(ctx context.Context, gen string) (int, error)
	Vouch(ctx context.Context, v cache.Vouch) (cache.Reset, error)
	Recheck(ctx context.Context) (uint64, error)
	ScheduleRecheck(ctx context.Context, xmax, inProgress uint64) error
	ClearFlushPending(ctx context.Context, token string) error
	MarkFlushPendingIfNone(ctx context.Context) (string, error)
	Watermark(ctx context.Context) (cache.Watermark, error)
	Time(ctx context.Context) (time.Time, error)
	FlushIfServerChanged(ctx context.Context) (bool, error)
	MarkFlushPending(ctx context.Context) (string, error)
	FlushPending(ctx context.Context) (string, error)
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
	DatabaseURL string
	Slot        string
	Publication string
	// Table is the sessions table followed (default: sessionguard's own,
	// resolved through the connection's search_path).
	Table             source.Table
	HeartbeatInterval time.Duration // default 1s
	StandbyPoll       time.Duration // default 1s
	StatusInterval    time.Duration // standby status updates; default 2s
	ShutdownTimeout   time.Duration // how long queued effects may take to apply on shutdown; default 10s
	BatchSize         int           // ops per Redis batch; default 1000
	MaxBackoff        time.Duration // reconnect backoff cap; default 5s
	Logger            *zap.Logger
	Metrics           *Metrics
	Now               func() time.Time
	// WhileActive, when set, runs for as long as this process is the
	// active consumer; its context ends with the leadership.
	WhileActive func(ctx context.Context)
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
	// pool is the Run's normal connection pool (heartbeats, visibility,
	// scrapes); nil before Run.
	pool atomic.Pointer[pgxpool.Pool]
	// key signs this process's heartbeats: only they move the watermark.
	key [32]byte
	// schema is the schema of the sessions table the stream decodes;
	// wantSchema the one the last source check found.
	schema, wantSchema atomic.Pointer[string]
	// pgVersion is server_version_num, read once.
	pgVersion atomic.Int32
}

// New returns a Consumer; zero options take the defaults.
func New(c Cache, o Options) *Consumer {
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
	if o.Table.Name == "" {
		o.Table, _ = source.TableOf(source.Sessionguard)
	}
	c2 := &Consumer{cache: c, o: o, log: o.Logger, m: o.Metrics}
	_, _ = rand.Read(c2.key[:]) // never fails (crypto/rand)
	c2.st.s = Status{Role: RoleStandby, Slot: o.Slot, Publication: o.Publication, Table: o.Table.Name, SlotFigures: SlotFigures{LagBytes: -1, SafeWALSize: -1}}
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

// Run elects, streams and applies until ctx is done. On ctx's end it stops
// reading, applies what is queued (within ShutdownTimeout), acknowledges what
// was applied and returns nil.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.bg.Wait()
	pool, err := pgxpool.New(ctx, c.o.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	c.pool.Store(pool)
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

// flushRetry empties the cache namespace (clearing the pending-flush mark
// owed, if any) and purges the old generation in the background.
func (c *Consumer) flushRetry(ctx context.Context, reason, owed string) error {
	var old string
	err := c.retry(ctx, "flush cache", func(ctx context.Context) error {
		var err error
		old, err = c.cache.Flush(ctx, owed)
		return err
	})
	if err != nil {
		return err
	}
	c.flushed(ctx, reason, old)
	return nil
}

// flushed counts a flush and purges the generation it left behind.
func (c *Consumer) flushed(ctx context.Context, reason, old string) {
	c.m.flushed(reason)
	c.st.update(func(s *Status) { s.Flushes++ })
	if old == "" {
		return
	}
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
