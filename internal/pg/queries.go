package pg

import (
	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/sessionguard/internal/source"
)

// queries are a table's session queries, built once from its description.
type queries struct {
	lookup, revokeOne, revokeUser string
	// byID and byHash find the rows of cache entries (see Store.Find): by
	// the id of a ByID table, returning the key too; by key hash, reading
	// the whole table, when the key column is not the hash.
	byID, byHash string
}

// quoteTable quotes a table's name as SQL.
func quoteTable(t source.Table) string {
	if s := t.Schema(); s != "" {
		return pgx.Identifier{s, t.Relation()}.Sanitize()
	}
	return pgx.Identifier{t.Relation()}.Sanitize()
}

func buildQueries(t source.Table) queries {
	table := quoteTable(t)
	col := func(c source.Column) string { return "s." + pgx.Identifier{c.Name}.Sanitize() }
	or := func(c source.Column, cast, null string) string {
		switch {
		case c.Name == "":
			return null
		case c.Type == "timestamp without time zone":
			return col(c) + ` AT TIME ZONE ` + QuoteLiteral(t.Location().String())
		}
		return col(c) + cast
	}
	key := func(c source.Column) string {
		if t.KeyIsHash {
			return pgx.Identifier{c.Name}.Sanitize()
		}
		return `convert_to(` + pgx.Identifier{c.Name}.Sanitize() + `::text, 'UTF8')`
	}
	id, user := pgx.Identifier{t.ID.Name}.Sanitize(), pgx.Identifier{t.UserID.Name}.Sanitize()
	if t.SecretID {
		// The id the API shows, and is given back, is its hash
		// (source.Table.IDHash); finding it reads the whole table.
		id = `encode(sha256(convert_to(` + QuoteLiteral(t.Name) + `, 'UTF8') || '\x00'::bytea || convert_to('id', 'UTF8') || '\x00'::bytea || convert_to(` + id + `::text, 'UTF8')), 'hex')`
	}
	revokedExpr := or(t.RevokedAt, "", "NULL::timestamptz")
	switch {
	case t.RevokedAt.Type == "boolean":
		// A flag reads as revoked at the epoch: when does not matter.
		revokedExpr = `CASE WHEN ` + col(t.RevokedAt) + ` IS TRUE THEN 'epoch'::timestamptz END`
	case t.RevokedAt.Name == "" && t.Active.Name != "":
		revokedExpr = `CASE WHEN ` + col(t.Active) + ` IS TRUE THEN NULL ELSE 'epoch'::timestamptz END`
	}
	var q queries
	// The session's columns, in the order rowCols scans them.
	cols := col(t.ID) + `::text, ` + or(t.UserID, "::text", "NULL::text") + `, ` +
		or(t.CreatedAt, "", "NULL::timestamptz") + `, ` + or(t.ExpiresAt, "", "NULL::timestamptz") + `, ` +
		revokedExpr + `, ` + or(t.LastActive, "", "NULL::timestamptz") + `, ` +
		or(t.AAL, "::text", "NULL::text")
	// One row whether or not a session matches, so the recovery flag and
	// the clock come with a miss too.
	q.lookup = `SELECT pg_is_in_recovery(), now(), ` + cols + ` FROM (SELECT 1) one LEFT JOIN ` + table + ` s ON ` + col(t.Key) + ` = $1`
	if !t.KeyIsHash {
		keyText := `convert_to(` + col(t.Key) + `::text, 'UTF8')`
		if t.ByID {
			idArg := `$1`
			if t.ID.Type != "" {
				idArg = `CAST($1::text AS ` + t.ID.Type + `)`
			}
			q.byID = `SELECT pg_is_in_recovery(), now(), ` + cols + `, ` + keyText +
				` FROM (SELECT 1) one LEFT JOIN ` + table + ` s ON ` + col(t.ID) + ` = ` + idArg
		}
		// source.Table.HashOf in SQL: no index has it, so this reads every
		// row, once for all the hashes given.
		q.byHash = `SELECT pg_is_in_recovery(), now(), p.h, ` + cols + ` FROM unnest($1::bytea[]) p(h) LEFT JOIN ` + table +
			` s ON sha256(convert_to(` + QuoteLiteral(t.Name) + `, 'UTF8') || '\x00'::bytea || ` + keyText + `) = p.h`
	}
	live := "true"
	if c := t.ExpiresAt; c.Name != "" {
		// Judged as the lookup judges it: in the zone it was written in.
		exp := pgx.Identifier{c.Name}.Sanitize()
		if c.Type == "timestamp without time zone" {
			exp = `(` + exp + ` AT TIME ZONE ` + QuoteLiteral(t.Location().String()) + `)`
		}
		live = `(` + exp + ` IS NULL OR ` + exp + ` > now())`
	}
	switch {
	case t.RevokedAt.Type == "boolean":
		revoked := pgx.Identifier{t.RevokedAt.Name}.Sanitize()
		q.revokeOne = `UPDATE ` + table + ` SET ` + revoked + ` = true WHERE ` + id + ` = $1 RETURNING ` + key(t.Key)
		q.revokeUser = `WITH revoked AS (
	    UPDATE ` + table + ` SET ` + revoked + ` = true
	     WHERE ` + user + ` = $1 AND ` + revoked + ` IS NOT TRUE AND ` + live + `
	 RETURNING ` + key(t.Key) + ` AS k)
	SELECT k, true FROM revoked
	 UNION ALL
	SELECT ` + key(t.Key) + `, false FROM ` + table + `
	 WHERE ` + user + ` = $1 AND ` + revoked + ` AND ` + live
	case t.RevokedAt.Name != "":
		revoked := pgx.Identifier{t.RevokedAt.Name}.Sanitize()
		q.revokeOne = `UPDATE ` + table + ` SET ` + revoked + ` = coalesce(` + revoked + `, now()) WHERE ` + id + ` = $1 RETURNING ` + key(t.Key)
		// The outer SELECT sees the table as it was before the CTE's UPDATE,
		// so its second branch lists only sessions revoked earlier.
		q.revokeUser = `WITH revoked AS (
	    UPDATE ` + table + ` SET ` + revoked + ` = now()
	     WHERE ` + user + ` = $1 AND ` + revoked + ` IS NULL AND ` + live + `
	 RETURNING ` + key(t.Key) + ` AS k)
	SELECT k, true FROM revoked
	 UNION ALL
	SELECT ` + key(t.Key) + `, false FROM ` + table + `
	 WHERE ` + user + ` = $1 AND ` + revoked + ` IS NOT NULL AND ` + live
	case t.Active.Name != "":
		// Revocation is deactivation, as Kratos revokes.
		active := pgx.Identifier{t.Active.Name}.Sanitize()
		q.revokeOne = `UPDATE ` + table + ` SET ` + active + ` = false WHERE ` + id + ` = $1 RETURNING ` + key(t.Key)
		q.revokeUser = `WITH revoked AS (
	    UPDATE ` + table + ` SET ` + active + ` = false
	     WHERE ` + user + ` = $1 AND ` + active + ` AND ` + live + `
	 RETURNING ` + key(t.Key) + ` AS k)
	SELECT k, true FROM revoked
	 UNION ALL
	SELECT ` + key(t.Key) + `, false FROM ` + table + `
	 WHERE ` + user + ` = $1 AND NOT ` + active + ` AND ` + live
	default:
		// Revocation is deletion, as the auth server signs out.
		q.revokeOne = `DELETE FROM ` + table + ` WHERE ` + id + ` = $1 RETURNING ` + key(t.Key)
		q.revokeUser = `DELETE FROM ` + table + ` WHERE ` + user + ` = $1 RETURNING ` + key(t.Key) + `, true`
	}
	return q
}
