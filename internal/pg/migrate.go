package pg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/sessionguard/sessionguard/migrations"
)

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Applied            []int64 // versions applied by this run
	Version            int64   // schema version afterwards
	PublicationCreated bool
}

// Migrate applies the embedded migrations (idempotent; concurrent runs wait
// on a Postgres advisory lock) and makes sure the publication exists and
// publishes the sessions table with inserts, updates, deletes and truncates.
func Migrate(ctx context.Context, pool *pgxpool.Pool, publication string) (MigrateResult, error) {
	var res MigrateResult
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return res, fmt.Errorf("migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations.FS, ".")
	if err != nil {
		return res, err
	}
	prov, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return res, fmt.Errorf("load migrations: %w", err)
	}
	results, err := prov.Up(ctx)
	if err != nil {
		return res, fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		res.Applied = append(res.Applied, r.Source.Version)
	}
	if res.Version, err = prov.GetDBVersion(ctx); err != nil {
		return res, fmt.Errorf("read schema version: %w", err)
	}
	if res.PublicationCreated, err = ensurePublication(ctx, db, publication); err != nil {
		return res, err
	}
	return res, nil
}

// ensurePublication creates the publication, or adds the table to an existing
// one, and makes it publish inserts, updates, deletes and truncates. It
// changes nothing (and so needs no ownership of the publication) when all is
// in place already. Done in Go rather than SQL so the name can come from
// PUBLICATION.
func ensurePublication(ctx context.Context, db *sql.DB, name string) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("ensure publication: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	// Serialise concurrent migrators (the catalog check below is not atomic).
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('sessionguard.publication'))`); err != nil {
		return false, fmt.Errorf("ensure publication: lock: %w", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	var (
		exists, hasTable, allOps bool
		serverVersion            int
	)
	err = tx.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		       EXISTS (SELECT 1 FROM pg_publication_tables
		                WHERE pubname = $1 AND schemaname = current_schema() AND tablename = 'sessions'),
		       coalesce((SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate
		                   FROM pg_publication WHERE pubname = $1), false),
		       current_setting('server_version_num')::int`,
		name).Scan(&exists, &hasTable, &allOps, &serverVersion)
	if err != nil {
		return false, fmt.Errorf("ensure publication: read catalog: %w", err)
	}
	if hasTable && serverVersion >= 150000 {
		if err := checkNoFilter(ctx, tx, name); err != nil {
			return false, err
		}
	}
	created := false
	switch {
	case !exists:
		_, err = tx.ExecContext(ctx, `CREATE PUBLICATION `+ident+
			` FOR TABLE sessions WITH (publish = 'insert, update, delete, truncate')`)
		created = true
	case !hasTable:
		_, err = tx.ExecContext(ctx, `ALTER PUBLICATION `+ident+` ADD TABLE sessions`)
	}
	if err == nil && exists && !allOps {
		_, err = tx.ExecContext(ctx, `ALTER PUBLICATION `+ident+
			` SET (publish = 'insert, update, delete, truncate')`)
	}
	if err != nil {
		return false, fmt.Errorf("ensure publication %q: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("ensure publication: commit: %w", err)
	}
	return created, nil
}

// checkNoFilter fails when the publication publishes sessions with a row
// filter or a column list (PostgreSQL 15+): a filter drops the events of the
// rows it leaves out, and a column list drops columns the invalidator reads
// (or, leaving out the replica identity, makes Postgres refuse updates and
// deletes on the table). Migrate does not remove them itself: they were set
// by someone, on purpose or not, and removing means re-adding the table.
func checkNoFilter(ctx context.Context, tx *sql.Tx, name string) error {
	var rowFilter, colList bool
	err := tx.QueryRowContext(ctx, `
		SELECT coalesce(bool_or(r.prqual IS NOT NULL), false), coalesce(bool_or(r.prattrs IS NOT NULL), false)
		  FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
		 WHERE p.pubname = $1 AND r.prrelid = 'sessions'::regclass`, name).Scan(&rowFilter, &colList)
	if err != nil {
		return fmt.Errorf("ensure publication: read row filters: %w", err)
	}
	var what string
	switch {
	case rowFilter && colList:
		what = "a row filter (WHERE) and a column list"
	case rowFilter:
		what = "a row filter (WHERE)"
	case colList:
		what = "a column list"
	default:
		return nil
	}
	ident := pgx.Identifier{name}.Sanitize()
	return fmt.Errorf("publication %q publishes the sessions table with %s, so some session changes would never reach the invalidator "+
		"and revoked sessions could stay valid in the cache; remove it: run `ALTER PUBLICATION %s DROP TABLE sessions` "+
		"and migrate again, which adds the table back without one", name, what, ident)
}

// EmitMessageResult says what RevokePublicEmitMessage did.
type EmitMessageResult struct {
	Changed    bool     // false: PUBLIC had no EXECUTE already
	Role       string   // the role granted EXECUTE (current_user)
	Signatures []string // the pg_logical_emit_message overloads, as regprocedure text
}

// RevokePublicEmitMessage revokes EXECUTE on every overload of
// pg_logical_emit_message from PUBLIC and grants it to current_user. Any
// login can otherwise write messages into the WAL that the invalidator
// reads (forged heartbeats). It needs a superuser, unless there is nothing
// left to do (then it succeeds without changing anything).
func RevokePublicEmitMessage(ctx context.Context, pool *pgxpool.Pool) (EmitMessageResult, error) {
	var res EmitMessageResult
	tx, err := pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("revoke pg_logical_emit_message: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var publicCan, roleCan, super bool
	err = tx.QueryRow(ctx, `
		SELECT current_user::text,
		       array_agg(p.oid::regprocedure::text ORDER BY p.oid),
		       bool_or(has_function_privilege('public', p.oid, 'EXECUTE')),
		       bool_and(has_function_privilege(current_user, p.oid, 'EXECUTE')),
		       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
		  FROM pg_proc p
		 WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace`).
		Scan(&res.Role, &res.Signatures, &publicCan, &roleCan, &super)
	if err != nil {
		return res, fmt.Errorf("revoke pg_logical_emit_message: read privileges: %w", err)
	}
	if len(res.Signatures) == 0 {
		return res, errors.New("revoke pg_logical_emit_message: no such function in pg_catalog")
	}
	funcs := strings.Join(res.Signatures, ", ")
	role := pgx.Identifier{res.Role}.Sanitize()
	revoke := "REVOKE EXECUTE ON FUNCTION " + funcs + " FROM PUBLIC"
	grant := "GRANT EXECUTE ON FUNCTION " + funcs + " TO " + role
	if !publicCan && roleCan {
		return res, nil
	}
	// A non-superuser's REVOKE only warns ("no privileges could be
	// revoked") and changes nothing: refuse up front instead.
	if !super {
		return res, fmt.Errorf("revoking EXECUTE on pg_logical_emit_message from PUBLIC needs a superuser, and role %s lacks the SUPERUSER attribute; "+
			"run as a superuser: %s; %s (grant it to the invalidator's role instead if that is another role)", role, revoke, grant)
	}
	if _, err := tx.Exec(ctx, revoke); err != nil {
		return res, fmt.Errorf("%s: %w", revoke, err)
	}
	if _, err := tx.Exec(ctx, grant); err != nil {
		return res, fmt.Errorf("%s: %w", grant, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("revoke pg_logical_emit_message: commit: %w", err)
	}
	res.Changed = true
	return res, nil
}
