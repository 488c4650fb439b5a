package pg

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/sessionguard/internal/source"
)

// Types a mapped column may have.
var (
	// Not character(n): the stream carries it blank-padded, text without.
	textTypes = []string{"text", "character varying"}
	timeTypes = []string{"timestamp with time zone", "timestamp without time zone"}
)

// idTypes are the types an id column may have: any the key may, when it is
// the key; else one whose text reads the same in the stream and in SQL
// (not character(n), blank-padded in one; not boolean, inet or a time).
func idTypes(t source.Table) []string {
	if t.ID.Name == t.Key.Name {
		return nil
	}
	return append(slices.Clone(textTypes), "uuid", "smallint", "integer", "bigint")
}

// ResolveTable completes a table described by settings (source.FromMapping)
// from the catalog: each column's type, the primary key as the id when none
// is named, whether a DELETE carries the key or only the id (ByID), and
// whether the id is the credential itself (SecretID). Any column that does
// not exist or has a type sessionguard cannot read is an error of one line
// naming its setting.
func ResolveTable(ctx context.Context, q RowQuerier, t source.Table) (source.Table, error) {
	cat, err := readCatalog(ctx, q, t.Name)
	if err != nil {
		return t, err
	}
	cols, pk, identity := cat.cols, cat.pk, cat.identity
	check := func(setting string, c *source.Column, want []string, what string) error {
		if c.Name == "" {
			return nil
		}
		typ, ok := cols[c.Name]
		switch {
		case !ok:
			return fmt.Errorf("%s: table %s has no column %q (names are case-sensitive, as the catalog spells them)", setting, t.Name, c.Name)
		case want != nil && !slices.Contains(want, typ):
			return fmt.Errorf("%s: column %q of %s is %s; it must be %s", setting, c.Name, t.Name, typ, what)
		}
		c.Type = typ
		return nil
	}
	if t.ID.Name == "" {
		if len(pk) != 1 {
			return t, fmt.Errorf("SESSION_TABLE_ID: %s has no single-column primary key; name the column that identifies a row", t.Name)
		}
		t.ID.Name = pk[0]
	}
	keyTypes, keyWhat := append(slices.Clone(textTypes), "uuid"), "text, varchar or uuid"
	if t.Format == source.FormatSHA256 {
		keyTypes, keyWhat = append(slices.Clone(textTypes), "bytea"), "bytea (the SHA-256 itself) or text (its lower-case hex)"
	}
	revokedTypes := append(slices.Clone(timeTypes), "boolean")
	for _, c := range []struct {
		setting string
		col     *source.Column
		want    []string
		what    string
	}{
		{"SESSION_TABLE_KEY", &t.Key, keyTypes, keyWhat},
		{"SESSION_TABLE_ID", &t.ID, idTypes(t), "text, varchar, uuid or an integer (or the key column itself)"},
		{"SESSION_TABLE_USER", &t.UserID, nil, ""},
		{"SESSION_TABLE_CREATED", &t.CreatedAt, timeTypes, "a timestamp"},
		{"SESSION_TABLE_EXPIRES", &t.ExpiresAt, timeTypes, "a timestamp"},
		{"SESSION_TABLE_REVOKED", &t.RevokedAt, revokedTypes, "a timestamp (revoked when not null) or a boolean (revoked when true)"},
		{"SESSION_TABLE_ACTIVE", &t.Active, []string{"boolean"}, "a boolean (revoked when not true)"},
		{"SESSION_TABLE_LAST_ACTIVE", &t.LastActive, timeTypes, "a timestamp"},
	} {
		if err := check(c.setting, c.col, c.want, c.what); err != nil {
			return t, err
		}
	}
	t.KeyIsHash = t.Key.Type == "bytea"
	// ByID follows from the mapping alone, never from the replica identity
	// as one process found it: every process must name entries alike.
	t.ByID = t.Key.Name != t.ID.Name
	named := t.Key.Name
	if t.ByID {
		named = t.ID.Name
		// The id index needs one row per id.
		if !slices.Equal(pk, []string{t.ID.Name}) && !slices.Equal(identity, []string{t.ID.Name}) {
			return t, fmt.Errorf("SESSION_TABLE_ID: %q must be the primary key of %s on its own, or its replica identity index on its own, so that it names one row", t.ID.Name, t.Name)
		}
	}
	if !slices.Contains(identity, named) {
		return t, fmt.Errorf("the replica identity of %s does not carry %q, so a DELETE would not say which session ended: "+
			"give it a primary key on it (or REPLICA IDENTITY USING INDEX on a unique index of it), or set SESSION_TABLE_ID to a column it carries", t.Name, named)
	}
	t.SecretID = t.Format != source.FormatSHA256 && t.Key.Name == t.ID.Name
	// The catalog's spelling, schema included: the cache keys are hashed
	// with it, so every process must use the same one.
	t.Name = pgx.Identifier{cat.schema, cat.rel}.Sanitize()
	return t, nil
}

// catalog is what ResolveTable and CheckColumns read of a table.
type catalog struct {
	schema, rel  string            // its schema and name
	cols         map[string]string // column name -> format_type
	pk, identity []string          // primary key and replica identity columns
}

func readCatalog(ctx context.Context, q RowQuerier, table string) (catalog, error) {
	var (
		c      catalog
		exists bool
	)
	err := q.QueryRow(ctx, `
		WITH t AS (SELECT oid, relreplident FROM pg_class WHERE oid = to_regclass($1))
		SELECT EXISTS (SELECT 1 FROM t),
		       coalesce((SELECT n.nspname || '' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN t ON c.oid = t.oid), ''),
		       coalesce((SELECT c.relname || '' FROM pg_class c JOIN t ON c.oid = t.oid), ''),
		       coalesce((SELECT json_object_agg(a.attname, format_type(a.atttypid, NULL)) FROM pg_attribute a JOIN t ON a.attrelid = t.oid
		                  WHERE a.attnum > 0 AND NOT a.attisdropped), '{}'),
		       coalesce((SELECT array_agg(a.attname) FROM pg_index i JOIN t ON i.indrelid = t.oid
		                   JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])
		                  WHERE i.indisprimary), '{}'),
		       coalesce((SELECT CASE t.relreplident
		                   WHEN 'f' THEN (SELECT array_agg(a.attname) FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped)
		                   WHEN 'n' THEN '{}'
		                   ELSE (SELECT array_agg(a.attname) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
		                                AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])
		                          WHERE i.indrelid = t.oid AND CASE t.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END) END
		                  FROM t), '{}')`, table).Scan(&exists, &c.schema, &c.rel, &c.cols, &c.pk, &c.identity)
	if err != nil {
		return c, fmt.Errorf("read the columns of %s: %w", table, err)
	}
	if !exists {
		return c, fmt.Errorf("SESSION_TABLE: no table %s (may this role see it? GRANT USAGE ON its schema)", table)
	}
	return c, nil
}

// CheckColumns says, in one line, which column of a named source's table
// is missing or of another type than the source reads; nil when none is.
func CheckColumns(ctx context.Context, q RowQuerier, t source.Table) error {
	cat, err := readCatalog(ctx, q, t.Name)
	if err != nil {
		return fmt.Errorf("no table %s: is DATABASE_URL the database %s writes to? (%w)", t.Name, t.Maker, err)
	}
	for _, c := range t.Columns() {
		typ, ok := cat.cols[c.Name]
		switch {
		case !ok:
			return fmt.Errorf("table %s has no column %q: is it %s's table, at a version sessionguard follows?", t.Name, c.Name, t.Maker)
		case c.Type != "" && typ != c.Type && !strings.HasSuffix(c.Type, "."+typ):
			return fmt.Errorf("column %q of %s is %s, not %s as %s creates it", c.Name, t.Name, typ, c.Type, t.Maker)
		}
	}
	return nil
}
