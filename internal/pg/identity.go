package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// IdentitySQL is a scalar text expression naming the sessions table (as
// to_regclass reads table) of the database it runs in: "<system identifier>/<database oid>/<table oid>", with
// "/standby" appended on a server in recovery. The invalidator stores it with
// each watermark and validators compare it with their own, so a watermark
// only vouches for the table it was taken from (a dropped and re-created
// table, another cluster or another database all differ), and a validator
// reading a hot standby (a copy that lags the primary the invalidator
// follows) never trusts or fills the cache. It is NULL when there is no
// such table. pg_control_system() is executable by PUBLIC, so any role can
// evaluate it.
// tag (source.Table.Tag) follows the table's oid.
func IdentitySQL(table, tag string) string {
	return `((SELECT system_identifier FROM pg_control_system())::text || '/' ||
	(SELECT oid FROM pg_database WHERE datname = current_database())::text || '/' ||
	to_regclass(` + QuoteLiteral(table) + `)::oid::text || ` + QuoteLiteral(tag) + ` ||
	CASE WHEN pg_is_in_recovery() THEN '/standby' ELSE '' END)`
}

// QuoteLiteral quotes s as an SQL string literal.
func QuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ErrNoSessionsTable means the database has no sessions table where the
// source says (not migrated, dropped, or not on the search path).
var ErrNoSessionsTable = errors.New("no sessions table")

// RowQuerier runs a one-row query: a pool, a connection or a transaction.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// StandbySuffix ends the identity of a server in recovery.
const StandbySuffix = "/standby"

// Identity evaluates IdentitySQL(table, tag) on q.
func Identity(ctx context.Context, q RowQuerier, table, tag string) (string, error) {
	var id *string
	if err := q.QueryRow(ctx, `SELECT `+IdentitySQL(table, tag)).Scan(&id); err != nil {
		return "", fmt.Errorf("read database identity: %w", err)
	}
	if id == nil {
		return "", fmt.Errorf("read database identity: %w: %s does not resolve (for sessionguard's own table run `validator migrate`, or fix the search_path of DATABASE_URL)", ErrNoSessionsTable, table)
	}
	return *id, nil
}

// Identity evaluates IdentitySQL on the store's pool for its table.
func (s *Store) Identity(ctx context.Context) (string, error) {
	return Identity(ctx, s.pool, s.t.Name, s.t.Tag())
}
