package app

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/invalidator"
	"github.com/sessionguard/sessionguard/internal/pg"
)

// invalidatorRedisTimeout bounds one Redis call of the invalidator; its
// calls are retried, never answered from elsewhere, so it may wait longer
// than a validator's.
const invalidatorRedisTimeout = 2 * time.Second

// RunInvalidator builds the invalidator, serves its health endpoints on
// LISTEN_ADDR and streams until ctx ends (then applies what is queued within
// SHUTDOWN_TIMEOUT). It returns nil after a shutdown; a failure to serve HTTP
// stops it with the error.
func RunInvalidator(ctx context.Context, cfg config.Invalidator, log *zap.Logger) error {
	pool, err := pg.NewPool(ctx, cfg.DatabaseURL, pg.PoolOptions{MaxConns: 1})
	if err != nil {
		return err
	}
	table, err := sessionTable(ctx, cfg.Common, pool)
	pool.Close()
	if err != nil {
		return err
	}
	rdb, err := cache.NewClient(cfg.RedisURL, cache.ClientOptions{Timeout: invalidatorRedisTimeout})
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c := cache.New(rdb, cache.Options{Prefix: cfg.RedisKeyPrefix})
	mctx, cancel := context.WithTimeout(ctx, invalidatorRedisTimeout)
	err = c.CheckMode(mctx)
	cancel()
	if err != nil {
		return err
	}
	check, closeCheck, err := sampledCheck(ctx, cfg, table, c, reg, log)
	if err != nil {
		return err
	}
	defer closeCheck()
	consumer := cdc.New(c, cdc.Options{
		DatabaseURL:       cfg.DatabaseURL,
		Slot:              cfg.ReplicationSlot,
		Publication:       cfg.Publication,
		Table:             table,
		HeartbeatInterval: cfg.HeartbeatInterval,
		StandbyPoll:       cfg.StandbyPoll,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		Logger:            log,
		Metrics:           cdc.NewMetrics(reg),
		WhileActive:       check,
	})
	reg.MustRegister(cdc.NewLagCollector(consumer))

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	log.Info("invalidator listening", zap.String("addr", ln.Addr().String()),
		zap.String("slot", cfg.ReplicationSlot), zap.String("publication", cfg.Publication),
		zap.String("redis_key_prefix", cfg.RedisKeyPrefix), zap.String("session_source", cfg.Source), zap.String("table", table.Name))
	handler := invalidator.Handler(invalidator.Options{Source: consumer, LagThreshold: cfg.LagThreshold, Gatherer: reg})

	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpDone := make(chan error, 1)
	go func() {
		err := serveHTTP(httpCtx, ln, handler, log, cfg.ShutdownTimeout)
		if err != nil {
			stop(err)
		}
		httpDone <- err
	}()
	err = consumer.Run(runCtx)
	stopHTTP() // health stays up until the consumer has stopped
	if herr := <-httpDone; err == nil {
		err = herr
	}
	return err
}
