package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/inspect"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// SettingsError is an inspection refused for what its settings say: a
// table unlike its description, a timeout the table has no column for, a
// DATABASE_URL that reaches a standby.
type SettingsError struct{ Err error }

func (e SettingsError) Error() string { return e.Err.Error() }
func (e SettingsError) Unwrap() error { return e.Err }

// WriteError is a report that could not be written.
type WriteError struct{ Err error }

func (e WriteError) Error() string { return "write the report: " + e.Err.Error() }
func (e WriteError) Unwrap() error { return e.Err }

// Inspect runs `validator inspect`: it compares cache entries with their
// Postgres rows as the validators judge them and writes the report to out.
// An error is a SettingsError, a WriteError, ctx's end, or a failure to
// read Redis or Postgres.
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
		return inspect.Report{}, tableError(ctx, pool, err)
	}
	if err := table.CheckRule(cfg.Timebox, cfg.Inactivity); err != nil {
		return inspect.Report{}, SettingsError{err}
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
	if errors.Is(err, inspect.ErrStandby) {
		return r, SettingsError{err}
	}
	if err != nil {
		return r, err
	}
	if cfg.JSON {
		err = json.NewEncoder(out).Encode(r)
	} else {
		err = r.WriteText(out)
	}
	if err != nil {
		return r, WriteError{err}
	}
	return r, nil
}

// tableError classes an error of sessionTable: a catalog that could not be
// read fails with a driver error, or leaves Postgres unreachable; any other
// error is the settings'.
func tableError(ctx context.Context, pool *pgxpool.Pool, err error) error {
	pctx, cancel := context.WithTimeout(ctx, startupCheck)
	defer cancel()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || pool.Ping(pctx) != nil {
		return fmt.Errorf("read postgres: %w", err)
	}
	return SettingsError{err}
}

// timeoutsMayApply reports whether validators of table may end sessions by
// SESSION_TIMEBOX or SESSION_INACTIVITY_TIMEOUT: settings of theirs the
// invalidator does not know, accepted with supabase and a table described by
// settings that has a column to count them from (source.Table.CheckRule).
func timeoutsMayApply(src string, table source.Table) bool {
	if src != source.Supabase && src != source.Generic {
		return false
	}
	return table.CheckRule(time.Nanosecond, 0) == nil || table.CheckRule(0, time.Nanosecond) == nil
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
	in := inspect.New(c, pg.NewStore(pool, table), inspect.Options{MaxStaleness: cfg.InspectGrace, IndexedOnly: true,
		RuleUnknown: timeoutsMayApply(cfg.Source, table)})
	w := inspect.NewWatch(in, inspect.WatchOptions{Interval: cfg.InspectInterval, Sample: cfg.InspectSample,
		Metrics: m, Logger: log.Named("inspect")})
	return w.Run, pool.Close, nil
}
