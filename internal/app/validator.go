// Package app wires the processes' dependencies from their configuration,
// so the mains stay thin and tests can run a whole server in-process.
package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/validation"
)

const (
	// startupCheck bounds the validator's first look at Postgres and Redis.
	startupCheck = 3 * time.Second
	// identityRefresh is how often the validator re-reads its database
	// identity (a re-created sessions table changes it).
	identityRefresh = 10 * time.Second
)

// Validator is a configured validator: its pools, service and handler.
type Validator struct {
	cfg      config.Validator
	log      *zap.Logger
	pool     *pgxpool.Pool
	rdb      redis.UniversalClient // nil in database-only mode
	handler  http.Handler
	registry *prometheus.Registry

	identity *validation.IdentityWatch
	// The identity refresher and the near cache's notice follower.
	stopBackground context.CancelFunc
	background     sync.WaitGroup
}

// NewValidator builds the validator's dependencies. It does not need
// Postgres or Redis to answer (except with SESSION_SOURCE=table, whose
// column types it must read): an unreachable Postgres makes /readyz answer
// 503 until it comes up, an unreachable Redis degrades to Postgres.
func NewValidator(ctx context.Context, cfg config.Validator, log *zap.Logger) (*Validator, error) {
	v := &Validator{cfg: cfg, log: log, registry: prometheus.NewRegistry()}
	v.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pool, err := pg.NewPool(ctx, cfg.DatabaseURL, pg.PoolOptions{MaxConns: int32(cfg.DBMaxConns)})
	if err != nil {
		return nil, err
	}
	v.pool = pool
	table, err := sessionTable(ctx, cfg.Common, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := table.CheckRule(cfg.Timebox, cfg.Inactivity); err != nil {
		pool.Close()
		return nil, err
	}
	creds, maxToken, err := credentials(ctx, cfg, table, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	store := pg.NewStore(pool, table)
	v.identity = validation.NewIdentityWatch(store, log, min(cfg.DBTimeout, startupCheck))
	pctx, cancel := context.WithTimeout(ctx, startupCheck)
	if err := pool.Ping(pctx); err != nil {
		log.Warn("postgres does not answer at startup; serving anyway, /readyz answers 503 until it does",
			zap.Error(err))
	} else {
		// A role that may not read every row of the table would see every
		// session as signed out: refuse to start, saying what to grant.
		if err := store.ReadCheck(pctx); err != nil {
			cancel()
			pool.Close()
			return nil, err
		}
		// A failure is logged by the watch and retried by its loop.
		_ = v.identity.Refresh(pctx)
	}
	cancel()

	var c *cache.Cache
	if cfg.RedisURL == "" {
		log.Info("REDIS_URL is empty: database-only mode, every validation goes to postgres")
	} else {
		rdb, err := cache.NewClient(cfg.RedisURL, cache.ClientOptions{
			PoolSize: cfg.RedisPoolSize, MinIdleConns: cfg.RedisMinIdle, Timeout: cfg.RedisTimeout,
		})
		if err != nil {
			pool.Close()
			return nil, err
		}
		v.rdb = rdb
		// Under the staleness guard only the invalidator starts a namespace,
		// so the validator's Redis user may be denied writing the generation.
		c = cache.New(rdb, cache.Options{Prefix: cfg.RedisKeyPrefix, TTL: cfg.CacheTTL, NegativeTTL: cfg.NegativeTTL,
			StartsNamespace: cfg.MaxStaleness == 0})
		rctx, cancel := context.WithTimeout(ctx, startupCheck)
		if err := rdb.Ping(rctx).Err(); err != nil {
			log.Warn("redis does not answer at startup; validations go to postgres until it does",
				zap.Error(err))
		}
		err = c.CheckMode(rctx)
		cancel()
		if err != nil {
			pool.Close()
			_ = rdb.Close()
			return nil, err
		}
	}
	if !cfg.CacheEnabled {
		log.Warn("SESSION_CACHE_ENABLED=false: the cache is switched off, every validation goes to postgres")
	}

	svc := validation.New(store, validation.Options{
		Credentials:   creds,
		Rule:          session.Rule{Timebox: cfg.Timebox, Inactivity: cfg.Inactivity},
		Cache:         c,
		CacheEnabled:  cfg.CacheEnabled,
		MaxStaleness:  cfg.MaxStaleness,
		Identity:      v.identity,
		NearCacheSize: cfg.NearCacheSize,
		CacheTTL:      cfg.CacheTTL,
		NegativeTTL:   cfg.NegativeTTL,
		RedisTimeout:  cfg.RedisTimeout,
		DBTimeout:     cfg.DBTimeout,
		Logger:        log,
		Metrics:       validation.NewMetrics(v.registry),
	})
	v.handler = httpapi.New(httpapi.Options{
		Service:       svc,
		Admin:         validation.NewAdmin(store, c, validation.AdminOptions{DBTimeout: cfg.DBTimeout, RedisTimeout: cfg.RedisTimeout, Forget: svc.Forget}),
		DB:            store,
		AdminToken:    cfg.AdminToken,
		SessionCookie: cfg.SessionCookie,
		UUIDIDs:       table.UUIDs,
		MaxTokenLen:   maxToken,
		// Supabase's browser helpers keep the access token in their own
		// session cookie.
		SupabaseCookie:     cfg.Source == source.Supabase,
		SupabaseCookieName: cfg.SupabaseCookieName,
		Logger:             log,
		Gatherer:           v.registry,
		Registerer:         v.registry,
	})
	bctx, stop := context.WithCancel(ctx)
	v.stopBackground = stop
	v.background.Go(func() { v.identity.Run(bctx, identityRefresh) })
	v.background.Go(func() { svc.FollowNotices(bctx) })
	return v, nil
}

// credentials reads presented tokens the source's way, and says how long
// one may be. With an http(s) JWKS URL the keys are fetched here, and then
// refreshed until ctx ends.
func credentials(ctx context.Context, cfg config.Validator, table source.Table, log *zap.Logger) (validation.Credentials, int, error) {
	if table.Format != source.FormatJWT {
		c, err := source.CredentialsOf(table, []byte(cfg.CookieSecret))
		if err != nil {
			return nil, 0, err
		}
		return c, c.MaxLen(), nil
	}
	j := cfg.JWT
	v, err := jwtauth.New(ctx, jwtauth.Options{Secret: []byte(j.Secret), JWKSURL: j.JWKSURL, Audience: j.Audience, Leeway: j.Leeway, Logger: log})
	if err != nil {
		return nil, 0, err
	}
	jc := source.JWT{Verifier: v, SessionlessRoles: j.SessionlessRoles}
	return jc, jc.MaxLen(), nil
}

// Handler is the validator's HTTP handler.
func (v *Validator) Handler() http.Handler { return v.handler }

// Serve answers HTTP on ln until ctx ends, then stops accepting and lets
// in-flight requests finish within SHUTDOWN_TIMEOUT. It returns nil after a
// shutdown and the error when serving fails.
func (v *Validator) Serve(ctx context.Context, ln net.Listener) error {
	v.log.Info("validator listening",
		zap.String("addr", ln.Addr().String()),
		zap.Bool("cache", v.rdb != nil && v.cfg.CacheEnabled),
		zap.Duration("cache_ttl", v.cfg.CacheTTL),
		zap.Duration("max_staleness", v.cfg.MaxStaleness),
		zap.String("redis_key_prefix", v.cfg.RedisKeyPrefix),
		zap.String("session_source", v.cfg.Source),
		zap.String("database_identity", v.identity.Current()),
		zap.Bool("admin_api", v.cfg.AdminToken != ""))
	return serveHTTP(ctx, ln, v.handler, v.log, v.cfg.ShutdownTimeout)
}

// Close stops the identity refresher and the near cache's subscriber, and
// releases the pools.
func (v *Validator) Close() {
	v.stopBackground()
	v.background.Wait()
	if v.rdb != nil {
		_ = v.rdb.Close()
	}
	v.pool.Close()
}

// Run builds the validator, listens on LISTEN_ADDR and serves until ctx
// ends.
func Run(ctx context.Context, cfg config.Validator, log *zap.Logger) error {
	v, err := NewValidator(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer v.Close()
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	return v.Serve(ctx, ln)
}

// Migrate applies the schema migrations and ensures the publication; for a
// table another server owns (SESSION_SOURCE=supabase) it only checks the
// table and the role and ensures the publication. With
// -revoke-public-emit-message it also takes EXECUTE on
// pg_logical_emit_message away from PUBLIC.
func Migrate(ctx context.Context, cfg config.Migrate, log *zap.Logger) error {
	pool, err := pg.NewPool(ctx, cfg.DatabaseURL, pg.PoolOptions{MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	table, err := sessionTable(ctx, cfg.Common, pool)
	if err != nil {
		return err
	}
	var res pg.MigrateResult
	if table.Own {
		if res, err = pg.Migrate(ctx, pool, cfg.Publication); err != nil {
			return err
		}
		if len(res.Applied) == 0 {
			log.Info("schema is up to date", zap.Int64("version", res.Version))
		} else {
			log.Info("migrations applied", zap.Int64s("applied", res.Applied), zap.Int64("version", res.Version))
		}
	} else if res, err = pg.MigrateForeign(ctx, pool, cfg.Publication, table); err != nil {
		return err
	}
	pubMsg := "publication present"
	if res.PublicationCreated {
		pubMsg = "publication created"
	}
	log.Info(pubMsg, zap.String("publication", cfg.Publication), zap.String("table", table.Name))
	for _, w := range res.Warnings {
		log.Warn(w.Message, zap.String("role", w.Role), zap.String("fix_sql", w.SQL))
	}
	if !cfg.RevokePublicEmitMessage {
		return nil
	}
	rv, err := pg.RevokePublicEmitMessage(ctx, pool)
	if err != nil {
		return err
	}
	funcs := strings.Join(rv.Signatures, ", ")
	msg := "pg_logical_emit_message was already not executable by PUBLIC; nothing changed"
	if rv.Changed {
		msg = "revoked EXECUTE on pg_logical_emit_message from PUBLIC and granted it to the migrating role"
	}
	log.Info(msg,
		zap.String("role", rv.Role),
		zap.String("note", "the invalidator's role must keep EXECUTE to send its heartbeats; if it connects as another role, grant it"),
		zap.String("grant_sql", "GRANT EXECUTE ON FUNCTION "+funcs+" TO <invalidator role>"))
	return nil
}
