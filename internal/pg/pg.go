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

// Found is what a lookup read.
type Found struct {
	Session *session.Session // nil: no row has this token hash
	Valid   bool             // Postgres itself (its clock) judges it valid now
	// Standby: read on a server in recovery, which may lag the primary the
	// invalidator follows; such an answer must not be cached.
	Standby bool
}

// Lookup returns the session with this token hash, whatever its state.
func (s *Store) Lookup(ctx context.Context, h session.Hash) (Found, error) {
	var (
		f                Found
		id, userID       *string
		created, expires *time.Time
		revoked          *time.Time
		valid            *bool
	)
	// One row whether or not a session matches, so the recovery flag
	// comes with a miss too.
	err := s.pool.QueryRow(ctx,
		`SELECT pg_is_in_recovery(), s.id::text, s.user_id::text, s.created_at, s.expires_at, s.revoked_at,
		        (s.revoked_at IS NULL AND s.expires_at > now())
		   FROM (SELECT 1) one LEFT JOIN sessions s ON s.token_hash = $1`, h[:]).
		Scan(&f.Standby, &id, &userID, &created, &expires, &revoked, &valid)
	if err != nil {
		return Found{}, fmt.Errorf("look up session by token hash: %w", err)
	}
	if id != nil && userID != nil && created != nil && expires != nil && valid != nil {
		f.Session = &session.Session{ID: *id, UserID: *userID, CreatedAt: *created, ExpiresAt: *expires, RevokedAt: revoked}
		f.Valid = *valid
	}
	return f, nil
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
