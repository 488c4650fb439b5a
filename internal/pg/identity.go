package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// IdentitySQL is a scalar text expression naming the sessions table of the
// database it runs in: "<system identifier>/<database oid>/<table oid>", with
// "/standby" appended on a server in recovery. The invalidator stores it with
// each watermark and validators compare it with their own, so a watermark
// only vouches for the table it was taken from (a dropped and re-created
// table, another cluster or another database all differ), and a validator
// reading a hot standby (a copy that lags the primary the invalidator
// follows) never trusts or fills the cache. It is NULL when there is no
// sessions table on the search path. pg_control_system() is executable by
// PUBLIC, so any role can evaluate it.
const IdentitySQL = `((SELECT system_identifier FROM pg_control_system())::text || '/' ||
	(SELECT oid FROM pg_database WHERE datname = current_database())::text || '/' ||
	to_regclass('sessions')::oid::text ||
	CASE WHEN pg_is_in_recovery() THEN '/standby' ELSE '' END)`

// ErrNoSessionsTable means the database has no sessions table on the
// search path (not migrated, or dropped).
var ErrNoSessionsTable = errors.New("no sessions table on the search path (run `validator migrate`)")

// RowQuerier runs a one-row query: a pool, a connection or a transaction.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// StandbySuffix ends the identity of a server in recovery.
const StandbySuffix = "/standby"

// Identity evaluates IdentitySQL on q.
func Identity(ctx context.Context, q RowQuerier) (string, error) {
	var id *string
	if err := q.QueryRow(ctx, `SELECT `+IdentitySQL).Scan(&id); err != nil {
		return "", fmt.Errorf("read database identity: %w", err)
	}
	if id == nil {
		return "", fmt.Errorf("read database identity: %w", ErrNoSessionsTable)
	}
	return *id, nil
}

// Identity evaluates IdentitySQL on the store's pool.
func (s *Store) Identity(ctx context.Context) (string, error) { return Identity(ctx, s.pool) }
