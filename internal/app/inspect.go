package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/inspect"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// Inspect runs `validator inspect`: it compares cache entries with their
// Postgres rows as the validators judge them and writes the report to out.
// An error means Redis or Postgres could not be read.
func Inspect(ctx context.Context, cfg config.Inspect, out io.Writer) (inspect.Report, error) {
	pool, err := pg.NewPool(ctx, cfg.DatabaseURL, pg.PoolOptions{MaxConns: 2})
	if err != nil {
		return inspect.Report{}, err
	}
	defer pool.Close()
	pctx, cancel := context.WithTimeout(ctx, startupCheck)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		return inspect.Report{}, fmt.Errorf("read postgres: %w", err)
	}
	table, err := sessionTable(ctx, cfg.Common, pool)
	if err != nil {
		return inspect.Report{}, err
	}
	rdb, err := cache.NewClient(cfg.RedisURL, cache.ClientOptions{Timeout: cfg.RedisTimeout})
	if err != nil {
		return inspect.Report{}, err
	}
	defer rdb.Close()
	in := inspect.New(cache.New(rdb, cache.Options{Prefix: cfg.RedisKeyPrefix}), pg.NewStore(pool, table), inspect.Options{
		Rule:         session.Rule{Timebox: cfg.Timebox, Inactivity: cfg.Inactivity},
		MaxStaleness: cfg.MaxStaleness,
	})
	n := cfg.Sample
	if cfg.All {
		n = 0
	}
	r, err := in.Inspect(ctx, n)
	if err != nil {
		return r, err
	}
	if cfg.JSON {
		return r, json.NewEncoder(out).Encode(r)
	}
	return r, r.WriteText(out)
}

// sampledCheck is the active invalidator's sampled check of cache c, run
// by the consumer while it leads (nil when INSPECT_INTERVAL or
// INSPECT_SAMPLE is 0, or when no entry of the table can be found through
// an index), and the function that releases its Postgres pool. Its
// counters are registered with reg in any case.
func sampledCheck(ctx context.Context, cfg config.Invalidator, table source.Table, c *cache.Cache, reg prometheus.Registerer, log *zap.Logger) (func(context.Context), func(), error) {
	m := inspect.NewMetrics(reg)
	switch {
	case cfg.InspectInterval <= 0 || cfg.InspectSample <= 0:
		log.Info("sampled cache check off (INSPECT_INTERVAL or INSPECT_SAMPLE is 0)")
		return nil, func() {}, nil
	case table.SecretID:
		log.Info("sampled cache check off: entries of this table name their row only by a hash of its secret id, "+
			"which only a sequential scan of the table finds; run validator inspect instead", zap.String("table", table.Name))
		return nil, func() {}, nil
	}
	pool, err := pg.NewPool(ctx, cfg.DatabaseURL, pg.PoolOptions{MaxConns: 2})
	if err != nil {
		return nil, nil, err
	}
	in := inspect.New(c, pg.NewStore(pool, table), inspect.Options{MaxStaleness: cfg.InspectGrace, IndexedOnly: true})
	w := inspect.NewWatch(in, inspect.WatchOptions{Interval: cfg.InspectInterval, Sample: cfg.InspectSample,
		Metrics: m, Logger: log.Named("inspect")})
	return w.Run, pool.Close, nil
}
