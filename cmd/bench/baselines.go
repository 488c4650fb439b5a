package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// baselines.go holds the two reference handlers the scenarios are compared
// with, in-process HTTP servers on the same Redis and Postgres:
//
//   - minimal Redis: hash the bearer token, one go-redis GET, 200 or 401;
//   - bare SELECT: hash the bearer token, one indexed SELECT on sessions.
//
// Neither checks a watermark, takes a lease or fills anything: they are the
// floor a validation by Redis or by Postgres cannot go below.

// baselineSelect is the bare SELECT's text, also how pg_stat_statements
// names it.
const baselineSelect = `SELECT revoked_at, expires_at FROM sessions WHERE token_hash = $1`

// minimalPrefix is the key prefix of the minimal handler's entries.
const minimalPrefix = "bench:min:"

// Pool sizes as the validator's defaults (REDIS_POOL_SIZE, DB_MAX_CONNS).
const baselinePoolSize = 10

type baselines struct {
	minimalURL, selectURL string
	servers               []*http.Server
	rdb                   *redis.Client
	pool                  *pgxpool.Pool

	found, asked atomic.Int64 // the minimal handler's GETs that found an entry, and all
}

func startBaselines(ctx context.Context, e *env) (*baselines, error) {
	b := &baselines{}
	b.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), PoolSize: baselinePoolSize})
	pcfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = baselinePoolSize
	if b.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, err
	}
	// One entry per warm token, about the size of a validator's entry.
	value := strings.Repeat("x", 120)
	pipe := b.rdb.Pipeline()
	for i, tok := range e.tokens.warm {
		pipe.Set(ctx, minimalPrefix+hashHex(tok), value, 0)
		if i%1000 == 999 {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, err
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}

	if b.minimalURL, err = b.serve(http.HandlerFunc(b.minimal)); err != nil {
		return nil, err
	}
	if b.selectURL, err = b.serve(http.HandlerFunc(b.bareSelect)); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *baselines) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	b.servers = append(b.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

func (b *baselines) close() {
	for _, s := range b.servers {
		_ = s.Close()
	}
	if b.rdb != nil {
		_ = b.rdb.Close()
	}
	if b.pool != nil {
		b.pool.Close()
	}
}

func hashHex(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if len(a) < 8 || !strings.EqualFold(a[:7], "bearer ") {
		return "", false
	}
	return a[7:], true
}

// minimal is the minimal Redis handler.
func (b *baselines) minimal(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r)
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	b.asked.Add(1)
	err := b.rdb.Get(r.Context(), minimalPrefix+hashHex(tok)).Err()
	switch {
	case err == nil:
		b.found.Add(1)
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, redis.Nil):
		w.WriteHeader(http.StatusUnauthorized)
	default:
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

// bareSelect is the bare indexed SELECT handler.
func (b *baselines) bareSelect(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r)
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h := sha256.Sum256([]byte(tok))
	var revoked, expires *time.Time
	err := b.pool.QueryRow(r.Context(), baselineSelect, h[:]).Scan(&revoked, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		w.WriteHeader(http.StatusUnauthorized)
	case err != nil:
		w.WriteHeader(http.StatusServiceUnavailable)
	case revoked != nil || (expires != nil && !expires.After(time.Now())):
		w.WriteHeader(http.StatusUnauthorized)
	default:
		w.WriteHeader(http.StatusOK)
	}
}
