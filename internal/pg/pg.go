// Package pg owns PostgreSQL access: the connection pool, the session
// queries, and the migration runner.
package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// ErrNotFound reports that no session matched.
var ErrNotFound = errors.New("session not found")

// PoolOptions tunes the pgx pool.
type PoolOptions struct {
	MaxConns int32 // 0 keeps pgx's default (max(4, NumCPU))
	MinConns int32
}

// NewPool opens a pgx pool. It does not wait for the server: readiness is
// checked by Ping.
func NewPool(ctx context.Context, url string, o PoolOptions) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.MinConns > 0 {
		cfg.MinConns = o.MinConns
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "sessionguard"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	return pool, nil
}

// Store runs the session queries of one source's table.
type Store struct {
	pool *pgxpool.Pool
	t    source.Table
	q    queries
}

// NewStore wraps a pool for the sessions of table t.
func NewStore(pool *pgxpool.Pool, t source.Table) *Store {
	return &Store{pool: pool, t: t, q: buildQueries(t)}
}

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Found is what a lookup read.
type Found struct {
	Session *session.Session // nil: no row has this key
	// Now is Postgres's clock at the lookup: the answer is judged at it,
	// so a row is never judged on a clock other than the database's.
	Now time.Time
	// Standby: read on a server in recovery, which may lag the primary the
	// invalidator follows; such an answer must not be cached.
	Standby bool
	// IDHash is the row's source.Table.IDHash for a ByID table (its cache
	// entry is indexed by it); nil otherwise or on a miss.
	IDHash *session.Hash
}

// arg is the lookup's parameter for key k.
func (s *Store) arg(k session.Key) any {
	if s.t.KeyIsHash {
		return k.Hash[:]
	}
	return k.Value
}

// Lookup returns the session named by k, whatever its state.
func (s *Store) Lookup(ctx context.Context, k session.Key) (Found, error) {
	var (
		f Found
		r rowCols
	)
	err := s.pool.QueryRow(ctx, s.q.lookup, s.arg(k)).Scan(append([]any{&f.Standby, &f.Now}, r.dest()...)...)
	if err != nil {
		return Found{}, fmt.Errorf("look up session: %w", err)
	}
	s.fill(&f, r)
	return f, nil
}

// rowCols are a session row's columns as the queries select them (NULL
// when no row matched).
type rowCols struct {
	id, userID, aal           *string
	created, expires, revoked *time.Time
	active                    *time.Time
}

func (r *rowCols) dest() []any {
	return []any{&r.id, &r.userID, &r.created, &r.expires, &r.revoked, &r.active, &r.aal}
}

// fill sets f's session (and id hash) from the row read; none when no row
// matched.
func (s *Store) fill(f *Found, r rowCols) {
	if r.id == nil {
		return
	}
	sess := &session.Session{ID: *r.id, RevokedAt: r.revoked}
	if s.t.ByID {
		h := s.t.IDHash(*r.id)
		f.IDHash = &h
	}
	if s.t.SecretID {
		sess.ID = s.t.IDHash(*r.id).Hex()
	}
	for _, p := range []struct {
		dst *string
		src *string
	}{{&sess.UserID, r.userID}, {&sess.AAL, r.aal}} {
		if p.src != nil {
			*p.dst = *p.src
		}
	}
	for _, p := range []struct {
		dst *time.Time
		src *time.Time
	}{{&sess.CreatedAt, r.created}, {&sess.ExpiresAt, r.expires}, {&sess.LastActive, r.active}} {
		if p.src != nil {
			*p.dst = *p.src
		}
	}
	f.Session = sess
}

// ErrUnsupported: the source's sessions are not this service's to create.
var ErrUnsupported = errors.New("sessions of this source are created by their own auth server")

// RevokesUsers reports whether RevokeByUser works: the table has a user
// column.
func (s *Store) RevokesUsers() bool { return s.t.UserID.Name != "" }

// CreatesSessions reports whether Create works: only for sessionguard's own
// table; another source's sessions are its auth server's to create.
func (s *Store) CreatesSessions() bool { return s.t.Own }

// Create inserts a session for userID lasting ttl and returns it.
func (s *Store) Create(ctx context.Context, userID string, h session.Hash, ttl time.Duration) (*session.Session, error) {
	if !s.t.Own {
		return nil, ErrUnsupported
	}
	var sess session.Session
	err := s.pool.QueryRow(ctx,
		`INSERT INTO sessions (user_id, token_hash, expires_at)
		 VALUES ($1, $2, now() + $3::interval)
		 RETURNING id::text, user_id::text, created_at, expires_at, revoked_at`, userID, h[:], ttl).
		Scan(&sess.ID, &sess.UserID, &sess.CreatedAt, &sess.ExpiresAt, &sess.RevokedAt)
	if err != nil {
		return nil, fmt.Errorf("insert session: %w", err)
	}
	return &sess, nil
}

// RevokeByID revokes one session the source's way (revoked_at, or DELETE
// as the auth server signs out) and returns its cache key. ErrNotFound when
// there is no such row.
func (s *Store) RevokeByID(ctx context.Context, id string) (session.Hash, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, s.q.revokeOne, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return session.Hash{}, ErrNotFound
	}
	if err != nil {
		return session.Hash{}, fmt.Errorf("revoke session: %w", err)
	}
	return s.hashOf(raw)
}

// RevokeByUser revokes every live session of a user and returns how many,
// with the cache keys of the user's sessions it revoked, and, for a table
// with revoked_at, of those revoked before that have not expired: a retry
// after a failed cache drop then drops those entries again. (A deleted row
// leaves nothing to find again; the invalidator drops its entry.)
func (s *Store) RevokeByUser(ctx context.Context, userID string) (int, []session.Hash, error) {
	rows, err := s.pool.Query(ctx, s.q.revokeUser, userID)
	if err != nil {
		return 0, nil, fmt.Errorf("revoke user sessions: %w", err)
	}
	defer rows.Close()
	var (
		hashes []session.Hash
		n      int
	)
	for rows.Next() {
		var (
			raw []byte
			now bool
		)
		if err := rows.Scan(&raw, &now); err != nil {
			return 0, nil, fmt.Errorf("revoke user sessions: %w", err)
		}
		h, err := s.hashOf(raw)
		if err != nil {
			return 0, nil, err
		}
		hashes = append(hashes, h)
		if now {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("revoke user sessions: %w", err)
	}
	return n, hashes, nil
}

func (s *Store) hashOf(raw []byte) (session.Hash, error) {
	h, ok := s.t.HashOf(raw)
	if !ok {
		return h, fmt.Errorf("%s has %d bytes, want %d", s.t.Key.Name, len(raw), len(h))
	}
	return h, nil
}

// IsInvalidInput reports whether err is Postgres refusing a value (a bad uuid,
// say): a client error rather than an outage.
func IsInvalidInput(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "22P02" || pgErr.Code == "22003" || pgErr.Code == "22007" || pgErr.Code == "22008")
}
