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

// Store runs the session queries.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore wraps a pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const sessionCols = `id::text, user_id::text, created_at, expires_at, revoked_at`

func scanSession(row pgx.Row) (*session.Session, error) {
	var s session.Session
	if err := row.Scan(&s.ID, &s.UserID, &s.CreatedAt, &s.ExpiresAt, &s.RevokedAt); err != nil {
		return nil, err
	}
	return &s, nil
}

// Lookup returns the session with this token hash, whatever its state, and
// whether Postgres itself (its clock) judges it valid now. ErrNotFound when
// there is no such row.
func (s *Store) Lookup(ctx context.Context, h session.Hash) (*session.Session, bool, error) {
	var sess session.Session
	var valid bool
	err := s.pool.QueryRow(ctx,
		`SELECT `+sessionCols+`, (revoked_at IS NULL AND expires_at > now())
		   FROM sessions WHERE token_hash = $1`, h[:]).
		Scan(&sess.ID, &sess.UserID, &sess.CreatedAt, &sess.ExpiresAt, &sess.RevokedAt, &valid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, ErrNotFound
	}
	if err != nil {
		return nil, false, fmt.Errorf("look up session by token hash: %w", err)
	}
	return &sess, valid, nil
}

// Create inserts a session for userID lasting ttl and returns it.
func (s *Store) Create(ctx context.Context, userID string, h session.Hash, ttl time.Duration) (*session.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx,
		`INSERT INTO sessions (user_id, token_hash, expires_at)
		 VALUES ($1, $2, now() + $3::interval)
		 RETURNING `+sessionCols, userID, h[:], ttl))
	if err != nil {
		return nil, fmt.Errorf("insert session: %w", err)
	}
	return sess, nil
}

// RevokeByID sets revoked_at on one session (keeping an earlier revocation
// time) and returns its token hash. ErrNotFound when there is no such row.
func (s *Store) RevokeByID(ctx context.Context, id string) (session.Hash, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx,
		`UPDATE sessions SET revoked_at = coalesce(revoked_at, now())
		  WHERE id = $1 RETURNING token_hash`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return session.Hash{}, ErrNotFound
	}
	if err != nil {
		return session.Hash{}, fmt.Errorf("revoke session: %w", err)
	}
	return toHash(raw)
}

// RevokeByUser revokes every live session of a user (not revoked, not
// expired; expired sessions are left as they are). It returns how many it
// revoked, and the token hashes of all the user's unexpired revoked sessions,
// those it revoked and those revoked before: a retry after a failed cache
// drop then drops those entries again.
func (s *Store) RevokeByUser(ctx context.Context, userID string) (int, []session.Hash, error) {
	// The outer SELECT sees the table as it was before the CTE's UPDATE, so
	// its second branch lists only sessions revoked earlier.
	rows, err := s.pool.Query(ctx, `
		WITH revoked AS (
		    UPDATE sessions SET revoked_at = now()
		     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
		 RETURNING token_hash)
		SELECT token_hash, true FROM revoked
		 UNION ALL
		SELECT token_hash, false FROM sessions
		 WHERE user_id = $1 AND revoked_at IS NOT NULL AND expires_at > now()`, userID)
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
		h, err := toHash(raw)
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

func toHash(raw []byte) (session.Hash, error) {
	var h session.Hash
	if len(raw) != len(h) {
		return h, fmt.Errorf("token_hash has %d bytes, want %d", len(raw), len(h))
	}
	copy(h[:], raw)
	return h, nil
}

// IsInvalidInput reports whether err is Postgres refusing a value (a bad uuid,
// say): a client error rather than an outage.
func IsInvalidInput(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "22P02" || pgErr.Code == "22007" || pgErr.Code == "22008")
}
