package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/source"
)

// MigrateForeign readies a sessions table that another server owns
// (table.Own false: Supabase's auth.sessions). It never creates or alters a
// table and runs no migration: it checks that the table and the migrating
// role have what the validator and the invalidator need, failing with one
// line that names the first thing missing and the SQL that fixes it, then
// ensures the publication as Migrate does. Privileges only some features
// need come back as Warnings.
func MigrateForeign(ctx context.Context, pool *pgxpool.Pool, publication string, table source.Table) (MigrateResult, error) {
	var res MigrateResult
	f, err := readForeignTable(ctx, pool, table)
	if err != nil {
		return res, err
	}
	if res.Warnings, err = f.check(); err != nil {
		return res, err
	}
	if res.PublicationCreated, err = ensurePublication(ctx, pool, publication, table.Name); err != nil {
		return res, err
	}
	return res, nil
}

// foreignTable is what the catalogs say of a foreign sessions table and of
// the role reading it.
type foreignTable struct {
	table                                 source.Table
	role                                  string
	super, replication, bypassRLS         bool
	walLevel                              string
	schema, schemaOwner                   string // schema quoted as SQL; empty when there is none
	schemaUsage                           bool
	exists                                bool
	rel, owner                            string // rel: the table as SQL, schema-qualified
	owns, canSelect, canRevoke            bool   // canRevoke: DELETE, or UPDATE where revoking is an update
	rowSecurity, forceRowSecurity         bool
	policies                              int
	replIdent                             string // pg_class.relreplident: d, n, f or i
	hasKey, hasPrimaryKey, identityHasKey bool
}

func readForeignTable(ctx context.Context, pool *pgxpool.Pool, t source.Table) (foreignTable, error) {
	f := foreignTable{table: t}
	schema := t.Schema()
	// The catalogs, not to_regclass: they answer even without USAGE on the
	// schema, so a missing table and a hidden one read apart. has_*_privilege
	// on an oid and pg_has_role(owner, 'USAGE') (the ownership test Postgres
	// applies) need no USAGE either.
	err := pool.QueryRow(ctx, `
		SELECT current_user, r.rolsuper, r.rolreplication, r.rolbypassrls, current_setting('wal_level'),
		       coalesce(quote_ident(n.nspname), ''), coalesce(pg_get_userbyid(n.nspowner), ''),
		       coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
		       c.oid IS NOT NULL, CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) ELSE '' END, coalesce(pg_get_userbyid(c.relowner), ''),
		       coalesce(pg_has_role(c.relowner, 'USAGE'), false),
		       coalesce(has_table_privilege(c.oid, 'SELECT'), false), coalesce(has_table_privilege(c.oid, $4), false),
		       coalesce(c.relrowsecurity, false), coalesce(c.relforcerowsecurity, false),
		       (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid),
		       coalesce(c.relreplident::text, ''),
		       a.attnum IS NOT NULL,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
		       -- A replica identity index carries its key columns only, not INCLUDE ones.
		       coalesce(c.relreplident = 'f', false) OR EXISTS (
		           SELECT 1 FROM pg_index i
		            WHERE i.indrelid = c.oid
		              AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END
		              AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1]))
		  FROM pg_roles r
		  LEFT JOIN pg_namespace n ON n.nspname = coalesce(nullif($1, ''), current_schema())
		  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')
		  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 AND NOT a.attisdropped
		 WHERE r.rolname = current_user`,
		schema, t.Relation(), t.Identity().Name, revokePrivilege(t)).Scan(
		&f.role, &f.super, &f.replication, &f.bypassRLS, &f.walLevel,
		&f.schema, &f.schemaOwner, &f.schemaUsage,
		&f.exists, &f.rel, &f.owner, &f.owns, &f.canSelect, &f.canRevoke,
		&f.rowSecurity, &f.forceRowSecurity, &f.policies,
		&f.replIdent, &f.hasKey, &f.hasPrimaryKey, &f.identityHasKey)
	if err != nil {
		return f, fmt.Errorf("read the catalog of %s: %w", t.Name, err)
	}
	return f, nil
}

// ReadCheck says, in one line with its fix, why the store's role may not
// read every row of a table another server owns (no USAGE on its schema, no
// SELECT, row security), or which column the source reads it lacks: the
// validator would then see every session as signed out, or fail each
// lookup. nil when all is well, and always for sessionguard's own table.
func (s *Store) ReadCheck(ctx context.Context) error {
	if s.t.Own {
		return nil
	}
	f, err := readForeignTable(ctx, s.pool, s.t)
	if err != nil {
		return err
	}
	if _, err = f.checkRead(); err != nil {
		return err
	}
	return CheckColumns(ctx, s.pool, s.t)
}

// check returns the first thing missing as an error of one line, else the
// warnings.
func (f foreignTable) check() ([]Warning, error) {
	role := pgx.Identifier{f.role}.Sanitize()
	asOwner := fmt.Sprintf("as the table's owner (%s) or a superuser run", f.owner)
	warnings, err := f.checkRead()
	if err != nil {
		return nil, err
	}
	if f.walLevel != "logical" {
		return nil, fmt.Errorf("wal_level is %s, and the invalidator's logical replication needs logical: as a superuser run: ALTER SYSTEM SET wal_level = logical, then restart Postgres",
			f.walLevel)
	}
	if !f.super && !f.replication {
		return nil, fmt.Errorf("role %s has neither REPLICATION nor SUPERUSER, and the invalidator, which usually connects as the same role, needs one to stream changes: "+
			"as a superuser run: ALTER ROLE %s REPLICATION (if the invalidator connects as another role, that role needs it)", role, role)
	}
	if !f.hasKey {
		return nil, fmt.Errorf("%s has no column %s, which names its sessions: is it the table %s creates?", f.rel, f.table.Identity().Name, f.table.Maker)
	}
	if !f.identityHasKey {
		return nil, fmt.Errorf("the replica identity of %s (%s) does not carry the key column %s, so a DELETE would not say which session ended: "+
			"%s: ALTER TABLE %s REPLICA IDENTITY DEFAULT (migrate never alters this table)", f.rel, f.identity(), f.table.Identity().Name, asOwner, f.rel)
	}
	if !f.canRevoke {
		p := revokePrivilege(f.table)
		warnings = append(warnings, Warning{
			Message: fmt.Sprintf("the role may not %s %s, so the admin API's revoke endpoints will fail; the table's owner (%s) or a superuser can grant it", map[string]string{"DELETE": "delete from", "UPDATE": "update"}[p], f.rel, f.owner),
			Role:    f.role, SQL: "GRANT " + p + " ON " + f.rel + " TO " + role,
		})
	}
	return warnings, nil
}

// revokePrivilege is what the admin API's revocation needs of the table:
// UPDATE where revoking sets a column, DELETE where it deletes the row.
func revokePrivilege(t source.Table) string {
	if t.RevokedAt.Name != "" || t.Active.Name != "" {
		return "UPDATE"
	}
	return "DELETE"
}

// checkRead is the part of check that reading every row needs.
func (f foreignTable) checkRead() ([]Warning, error) {
	role := pgx.Identifier{f.role}.Sanitize()
	asOwner := fmt.Sprintf("as the table's owner (%s) or a superuser run", f.owner)
	if !f.exists {
		return nil, fmt.Errorf("no table %s: is DATABASE_URL the database %s writes to (it creates the table)?", f.table.Name, f.table.Maker)
	}
	if !f.schemaUsage {
		return nil, fmt.Errorf("role %s may not use schema %s, so it cannot see %s: as the schema's owner (%s) or a superuser run: GRANT USAGE ON SCHEMA %s TO %s",
			role, f.schema, f.rel, f.schemaOwner, f.schema, role)
	}
	if !f.canSelect {
		return nil, fmt.Errorf("role %s may not read %s: %s: GRANT SELECT ON %s TO %s (and to any other role the validator or invalidator connects as)",
			role, f.rel, asOwner, f.rel, role)
	}
	var warnings []Warning
	bypassRLSSQL := "ALTER ROLE " + role + " BYPASSRLS"
	if f.rowSecurity && !f.super && !f.bypassRLS && (!f.owns || f.forceRowSecurity) {
		why := fmt.Sprintf("row security is on for it, and the role is neither a superuser nor the table's owner (%s) and lacks BYPASSRLS", f.owner)
		if f.owns {
			why = "row security is forced on it (FORCE ROW LEVEL SECURITY), which holds even its owner, this role, to its policies unless it has BYPASSRLS"
		}
		if f.policies == 0 {
			return nil, fmt.Errorf("role %s reads no rows of %s: %s, and the table has no policy, so every session would look signed out: "+
				"as a superuser run: %s (and for any other role the validator or invalidator connects as)", role, f.rel, why, bypassRLSSQL)
		}
		// Policies someone wrote may let the role read every row; migrate
		// cannot tell, so it warns rather than refuses.
		warnings = append(warnings, Warning{
			Message: fmt.Sprintf("row security policies on %s decide which sessions the role reads, and a session it cannot read looks signed out", f.rel),
			Role:    f.role, SQL: bypassRLSSQL,
		})
	}
	return warnings, nil
}

// identity describes the replica identity for a message.
func (f foreignTable) identity() string {
	switch {
	case f.replIdent == "n":
		return "NOTHING"
	case f.replIdent == "d" && !f.hasPrimaryKey:
		return "DEFAULT, but the table has no primary key"
	case f.replIdent == "d":
		return "DEFAULT, a primary key without " + f.table.Identity().Name
	case f.replIdent == "i":
		return "USING INDEX, an index without " + f.table.Identity().Name
	}
	return "unknown: " + f.replIdent
}
