package cdc

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/source"
)

// sourceFacts is what the heartbeat checks, in its own transaction, before it
// may vouch for a moment: that every change of the sessions table the
// stream decodes was published with the key the invalidator needs.
type sourceFacts struct {
	TableExists     bool
	Schema          string // schema of the sessions table on the search path
	PubExists       bool
	PubAllOps       bool   // insert, update, delete and truncate published
	PubHasTable     bool   // the table is in the publication
	PubFiltered     bool   // a row filter or column list (PostgreSQL 15+)
	ReplicaIdentity string // d, n, f or i
	IdentityHasKey  bool   // the replica identity carries the key column
	BadColumns      string // needed columns missing or of another type
	Identity        string // pg.IdentitySQL; "" when the table is missing
	// Catalog fingerprints the catalog rows that decide what is published
	// (publication, its membership rows, the table, its indexes and
	// columns): oid and xmin change with every ALTER, even one undone.
	Catalog string
	// Xmax and InProgress: the check's snapshot xmax (a 64-bit xid) and how
	// many transactions were in progress in it; Open how many of those are
	// below the recheck xid passed in (see cache.Vouch).
	Xmax, InProgress, Open uint64
}

// sourceFactsSQL reads sourceFacts in one statement (one snapshot). $1 is
// the publication, $2 the recheck xid (0: none); the verbs fill in the
// table (a literal), its key column (a literal), the columns it needs (a
// VALUES list of name and type), the identity expression and the published
// schemas.
// pg_publication_rel is read through to_jsonb so that prqual and prattrs,
// which PostgreSQL 14 lacks, read as NULL there.
const sourceFactsSQL = `
WITH t AS (SELECT c.oid, n.nspname, c.relname, c.relreplident
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass(%[1]s)),
     p AS (SELECT *, xmin AS row_xmin FROM pg_publication WHERE pubname = $1)
SELECT EXISTS (SELECT 1 FROM t),
       coalesce((SELECT nspname FROM t), current_schema(), ''),
       EXISTS (SELECT 1 FROM p),
       coalesce((SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate FROM p), false),
       EXISTS (SELECT 1 FROM pg_publication_tables pt JOIN t ON pt.schemaname = t.nspname AND pt.tablename = t.relname
                WHERE pt.pubname = $1),
       EXISTS (SELECT 1 FROM pg_publication_rel r JOIN p ON p.oid = r.prpubid JOIN t ON t.oid = r.prrelid
                WHERE to_jsonb(r)->>'prqual' IS NOT NULL OR to_jsonb(r)->>'prattrs' IS NOT NULL),
       coalesce((SELECT relreplident::text FROM t), ''),
       -- An index's INCLUDE columns are not in the replica identity: only
       -- its first indnkeyatts columns count.
       coalesce((SELECT CASE t.relreplident WHEN 'f' THEN true WHEN 'n' THEN false ELSE EXISTS (
                   SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])
                    WHERE i.indrelid = t.oid AND a.attname = %[2]s
                      AND CASE t.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END) END
                   FROM t), false),
       coalesce((SELECT string_agg(w.col || coalesce(' ' || w.typ, ''), ', ')
                   FROM (VALUES %[3]s) w(col, typ)
                  WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN t ON a.attrelid = t.oid
                                     WHERE a.attname = w.col AND a.attnum > 0 AND NOT a.attisdropped
                                       AND (w.typ IS NULL OR a.atttypid = to_regtype(w.typ)))), ''),
       coalesce(%[4]s, ''),
       concat_ws('/',
         (SELECT oid || ':' || row_xmin FROM p),
         (SELECT string_agg(r.oid || ':' || r.xmin, ',' ORDER BY r.oid)
            FROM pg_publication_rel r JOIN p ON p.oid = r.prpubid JOIN t ON t.oid = r.prrelid),
         %[5]s,
         (SELECT c.oid || ':' || c.xmin FROM pg_class c JOIN t ON c.oid = t.oid),
         (SELECT string_agg(i.indexrelid || ':' || i.xmin, ',' ORDER BY i.indexrelid)
            FROM pg_index i JOIN t ON i.indrelid = t.oid),
         (SELECT string_agg(a.attnum || ':' || a.xmin, ',' ORDER BY a.attnum)
            FROM pg_attribute a JOIN t ON a.attrelid = t.oid WHERE a.attnum > 0)),
       pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
       (SELECT count(*) FROM pg_snapshot_xip(pg_current_snapshot())),
       (SELECT count(*) FROM pg_snapshot_xip(pg_current_snapshot()) x WHERE x::text::numeric < $2)`

// publishedSchemasSQL fingerprints FOR TABLES IN SCHEMA membership
// (PostgreSQL 15+; before that it does not exist).
const publishedSchemasSQL = `(SELECT string_agg(pn.oid || ':' || pn.xmin, ',' ORDER BY pn.oid)
            FROM pg_publication_namespace pn JOIN p ON p.oid = pn.pnpubid
            JOIN pg_namespace n ON n.oid = pn.pnnspid JOIN t ON t.nspname = n.nspname)`

// sourceFactsQuery is sourceFactsSQL for table t on a server of version
// (server_version_num).
func sourceFactsQuery(t source.Table, version int) string {
	schemas := "NULL"
	if version >= 150000 {
		schemas = publishedSchemasSQL
	}
	var cols []string
	for _, c := range t.Columns() {
		typ := "NULL"
		if c.Type != "" {
			typ = pg.QuoteLiteral(c.Type)
		}
		cols = append(cols, "("+pg.QuoteLiteral(c.Name)+", "+typ+")")
	}
	return fmt.Sprintf(sourceFactsSQL, pg.QuoteLiteral(t.Name), pg.QuoteLiteral(t.Identity().Name), strings.Join(cols, ", "),
		pg.IdentitySQL(t.Name, t.Tag()), schemas)
}

// readSourceFacts runs a sourceFactsQuery, counting open transactions below
// recheck.
func readSourceFacts(ctx context.Context, q pg.RowQuerier, query, publication string, recheck uint64) (sourceFacts, error) {
	var f sourceFacts
	err := q.QueryRow(ctx, query, publication, strconv.FormatUint(recheck, 10)).Scan(&f.TableExists, &f.Schema, &f.PubExists, &f.PubAllOps,
		&f.PubHasTable, &f.PubFiltered, &f.ReplicaIdentity, &f.IdentityHasKey, &f.BadColumns, &f.Identity, &f.Catalog, &f.Xmax, &f.InProgress, &f.Open)
	if err != nil {
		return f, fmt.Errorf("check the sessions table and publication: %w", err)
	}
	return f, nil
}

// problems says what keeps the watermark from vouching for the row-event
// path of table t, each with its fix; none means every change of the table
// reaches the stream with the key that names its cache entry. decoding is
// the schema the stream decodes.
func (f sourceFacts) problems(t source.Table, publication, decoding string) []string {
	pub := pgx.Identifier{publication}.Sanitize()
	if !f.TableExists {
		if t.Own {
			return []string{fmt.Sprintf("no %s table on the search path: run `validator migrate`, or fix the search_path of DATABASE_URL", t.Name)}
		}
		return []string{fmt.Sprintf("no table %s: is DATABASE_URL the database %s writes to, and may this role see it (GRANT USAGE ON SCHEMA)?", t.Name, t.Maker)}
	}
	table := pgx.Identifier{f.Schema, t.Relation()}.Sanitize()
	var out []string
	if decoding != "" && f.Schema != decoding {
		out = append(out, fmt.Sprintf("the stream decodes %s.%s but the search path now finds %s: the invalidator reconnects to follow it (and flushes the cache)", decoding, t.Relation(), table))
	}
	switch {
	case !f.PubExists:
		out = append(out, fmt.Sprintf("publication %s does not exist: run `validator migrate`", pub))
	case !f.PubHasTable:
		out = append(out, fmt.Sprintf("publication %s does not publish %s: run `validator migrate` (or ALTER PUBLICATION %s ADD TABLE %s)", pub, table, pub, table))
	}
	if f.PubExists && !f.PubAllOps {
		out = append(out, fmt.Sprintf("publication %s does not publish all of insert, update, delete and truncate: run `validator migrate` (or ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate'))", pub, pub))
	}
	if f.PubFiltered {
		out = append(out, fmt.Sprintf("publication %s publishes %s with a row filter or column list, so some changes never reach the invalidator: run ALTER PUBLICATION %s DROP TABLE %s, then `validator migrate`", pub, table, pub, table))
	}
	if !f.IdentityHasKey {
		what := map[string]string{"d": "DEFAULT (the primary key)", "n": "NOTHING", "i": "an index"}[f.ReplicaIdentity]
		if what == "" {
			what = f.ReplicaIdentity
		}
		fix := "ALTER TABLE " + table + " REPLICA IDENTITY USING INDEX sessions_token_hash_key"
		if !t.Own {
			fix = "ALTER TABLE " + table + " REPLICA IDENTITY DEFAULT (if " + t.Identity().Name + " is its primary key, as " + t.Maker + " creates it; else USING INDEX on a unique index of it)"
		}
		out = append(out, fmt.Sprintf("%s has REPLICA IDENTITY %s without %s, so a DELETE does not say which cache entry to drop: run %s", table, what, t.Identity().Name, fix))
	}
	if f.BadColumns != "" {
		where := "see migrations/"
		if !t.Own {
			where = "as " + t.Maker + " creates them"
		}
		out = append(out, fmt.Sprintf("%s lacks columns the invalidator reads (or they have another type): %s; restore them (%s)", table, f.BadColumns, where))
	}
	return out
}
