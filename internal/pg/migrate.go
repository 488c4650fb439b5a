package pg

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"

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
// one. Done in Go rather than SQL so the name can come from PUBLICATION.
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
	var exists, hasTable bool
	err = tx.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		       EXISTS (SELECT 1 FROM pg_publication_tables
		                WHERE pubname = $1 AND schemaname = current_schema() AND tablename = 'sessions')`,
		name).Scan(&exists, &hasTable)
	if err != nil {
		return false, fmt.Errorf("ensure publication: read catalog: %w", err)
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
	if err == nil && exists {
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
