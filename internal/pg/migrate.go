package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/sessionguard/sessionguard/migrations"
)

// MigrateResult says what Migrate or MigrateForeign did.
type MigrateResult struct {
	Applied            []int64 // versions applied by this run (Migrate only)
	Version            int64   // schema version afterwards (Migrate only)
	PublicationCreated bool
	// Warnings are missing privileges that only some features need; the
	// run succeeded without them.
	Warnings []Warning
}

// Warning is a missing privilege migrate does not fail on.
type Warning struct {
	Message string // what breaks without it, fit for a log message
	Role    string // the role that lacks it
	SQL     string // what grants it
}

// String is the warning as one line: the message, then the SQL.
func (w Warning) String() string { return w.Message + ": " + w.SQL }

// ownTable is the table the embedded migrations create, as to_regclass reads it.
const ownTable = "sessions"

// publishAll is the publish list the invalidator needs.
const publishAll = "insert, update, delete, truncate"

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
	if res.PublicationCreated, err = ensurePublication(ctx, pool, publication, ownTable); err != nil {
		return res, err
	}
	return res, nil
}

// ensurePublication creates the publication, or adds the table (named as
// to_regclass reads it) to an existing one, and makes it publish inserts,
// updates, deletes and truncates. It changes nothing (and so needs no
// ownership of the publication) when all is in place already. A change is
// tried rather than judged beforehand (an extension such as Supabase's
// supautils may let a role do what the catalog says it may not); when
// Postgres refuses it for want of privilege, the error says who may make it
// and how. Done in Go rather than SQL so the name can come from PUBLICATION.
func ensurePublication(ctx context.Context, pool *pgxpool.Pool, name, table string) (bool, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("ensure publication: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// Serialise concurrent migrators (the catalog check below is not atomic).
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('sessionguard.publication'))`); err != nil {
		return false, fmt.Errorf("ensure publication: lock: %w", err)
	}
	var (
		rel                                  *string // the table as SQL, qualified if table is
		exists, hasTable, allOps             bool
		tableOwner, pubOwner, role, database string
		serverVersion                        int
	)
	err = tx.QueryRow(ctx, `
		WITH t AS (SELECT c.oid, n.nspname, c.relname, c.relowner,
		                  CASE WHEN strpos($2, '.') > 0 THEN format('%I.%I', n.nspname, c.relname)
		                       ELSE format('%I', c.relname) END AS rel
		             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		            WHERE c.oid = to_regclass($2::text)),
		     p AS (SELECT * FROM pg_publication WHERE pubname = $1)
		SELECT (SELECT rel FROM t),
		       EXISTS (SELECT 1 FROM p),
		       EXISTS (SELECT 1 FROM pg_publication_tables pt JOIN t ON pt.schemaname = t.nspname AND pt.tablename = t.relname
		                WHERE pt.pubname = $1),
		       coalesce((SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate FROM p), false),
		       current_setting('server_version_num')::int,
		       coalesce((SELECT pg_get_userbyid(relowner) FROM t), ''),
		       coalesce((SELECT pg_get_userbyid(pubowner) FROM p), ''),
		       current_user, current_database()`,
		name, table).Scan(&rel, &exists, &hasTable, &allOps, &serverVersion,
		&tableOwner, &pubOwner, &role, &database)
	if err != nil {
		return false, fmt.Errorf("ensure publication: read catalog: %w", err)
	}
	if rel == nil {
		return false, fmt.Errorf("ensure publication %q: no table %s", name, table)
	}
	if hasTable && serverVersion >= 150000 {
		if err := checkNoFilter(ctx, tx, name, table, *rel); err != nil {
			return false, err
		}
	}
	pub, roleSQL := pgx.Identifier{name}.Sanitize(), pgx.Identifier{role}.Sanitize()
	// try runs stmt; refused for want of privilege, it keeps denied as the
	// error to answer.
	var deniedErr error
	try := func(stmt string, denied error) error {
		_, err := tx.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			deniedErr = denied
		}
		return err
	}
	created := false
	switch {
	case !exists:
		create := `CREATE PUBLICATION ` + pub + ` FOR TABLE ` + *rel + ` WITH (publish = '` + publishAll + `')`
		err = try(create, fmt.Errorf("there is no publication %s, and role %s may not create one for %s "+
			"(that needs a superuser, or the table's owner %s with CREATE on database %s): run as one of them: %s, "+
			"then migrate again, which then only checks", pub, roleSQL, *rel, tableOwner, pgx.Identifier{database}.Sanitize(), create))
		created = true
	case !hasTable:
		add := `ALTER PUBLICATION ` + pub + ` ADD TABLE ` + *rel
		err = try(add, fmt.Errorf("publication %s does not publish %s, and role %s may not add it "+
			"(that needs a superuser, or a role owning both the table, owned by %s, and the publication, owned by %s): "+
			"run as one of them: %s, then migrate again, which then only checks", pub, *rel, roleSQL, tableOwner, pubOwner, add))
	}
	if err == nil && exists && !allOps {
		set := `ALTER PUBLICATION ` + pub + ` SET (publish = '` + publishAll + `')`
		err = try(set, fmt.Errorf("publication %s does not publish all four of %s, and role %s may not change it "+
			"(that needs a superuser or its owner %s): run as one of them: %s, then migrate again, which then only checks",
			pub, "insert, update, delete and truncate", roleSQL, pubOwner, set))
	}
	if deniedErr != nil {
		return false, deniedErr
	}
	if err != nil {
		return false, fmt.Errorf("ensure publication %q: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("ensure publication: commit: %w", err)
	}
	return created, nil
}

// checkNoFilter fails when the publication publishes the table with a row
// filter or a column list (PostgreSQL 15+): a filter drops the events of the
// rows it leaves out, and a column list drops columns the invalidator reads
// (or, leaving out the replica identity, makes Postgres refuse updates and
// deletes on the table). Migrate does not remove them itself: they were set
// by someone, on purpose or not, and removing means re-adding the table.
func checkNoFilter(ctx context.Context, tx pgx.Tx, name, table, rel string) error {
	var rowFilter, colList bool
	err := tx.QueryRow(ctx, `
		SELECT coalesce(bool_or(r.prqual IS NOT NULL), false), coalesce(bool_or(r.prattrs IS NOT NULL), false)
		  FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
		 WHERE p.pubname = $1 AND r.prrelid = to_regclass($2::text)`, name, table).Scan(&rowFilter, &colList)
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
	return fmt.Errorf("publication %q publishes the table %s with %s, so some session changes would never reach the invalidator "+
		"and revoked sessions could stay valid in the cache; remove it: run `ALTER PUBLICATION %s DROP TABLE %s` "+
		"and migrate again, which adds the table back without one", name, rel, what, ident, rel)
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
