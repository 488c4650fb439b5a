package cdc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// LockKey is the advisory lock key that elects the active consumer of slot.
func LockKey(slot string) int64 {
	h := fnv.New64a()
	h.Write([]byte("sessionguard.invalidator/" + slot))
	return int64(h.Sum64())
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
	if c.o.WhileActive != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.o.WhileActive(leadCtx) }()
	}
	c.lead(leadCtx)
	lost(nil)
	wg.Wait()
	if cause := context.Cause(leadCtx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		c.log.Error("lost leadership: stopped streaming", zap.Error(cause))
		// Streaming ended in an error and will be retried, as when the
		// replication connection fails first.
		c.m.reconnect()
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
