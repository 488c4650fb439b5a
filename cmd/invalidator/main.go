// Command invalidator tails Postgres logical replication of the sessions
// table and keeps the Redis session cache right. See docs/invalidator.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/invalidator"
)

func main() {
	cfg, err := config.LoadInvalidator(os.Args[1:], os.Getenv)
	var help config.ErrHelp
	if errors.As(err, &help) {
		fmt.Fprint(os.Stdout, help.Usage)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "invalidator: configuration: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "invalidator: %v\n", err)
		os.Exit(1)
	}
}

func run(cfg config.Invalidator) error {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(cfg.LogLevel)
	log, err := zc.Build()
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer log.Sync() //nolint:errcheck // stderr

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	rdb, err := cache.NewClient(cfg.RedisURL, cache.ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	consumer := cdc.New(cache.New(rdb, cache.Options{Prefix: cfg.RedisKeyPrefix}), cdc.Options{
		DatabaseURL:       cfg.DatabaseURL,
		Slot:              cfg.ReplicationSlot,
		Publication:       cfg.Publication,
		HeartbeatInterval: cfg.HeartbeatInterval,
		StandbyPoll:       cfg.StandbyPoll,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		Logger:            log,
		Metrics:           cdc.NewMetrics(reg),
	})
	reg.MustRegister(cdc.NewLagCollector(consumer))

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           invalidator.Handler(invalidator.Options{Source: consumer, LagThreshold: cfg.LagThreshold, Gatherer: reg}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", zap.Error(err))
		}
	}()
	log.Info("invalidator started", zap.String("listen", ln.Addr().String()),
		zap.String("slot", cfg.ReplicationSlot), zap.String("publication", cfg.Publication))

	err = consumer.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	log.Info("invalidator stopped")
	return err
}
