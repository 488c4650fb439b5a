// Package source describes the sessions tables sessionguard follows: where
// the rows are, which column names a row's cache entry, which columns hold
// the session, and how a presented credential becomes that key. Each kind of
// table is one Table value and one Credentials; the layers below read them
// rather than branch on a source's name.
package source

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Names of the sources (SESSION_SOURCE).
const (
	Sessionguard = "sessionguard" // sessionguard's own sessions table (default)
	Supabase     = "supabase"     // the Supabase auth server's auth.sessions
)

// Column is one column of a sessions table. Type is the type as format_type
// prints it; the invalidator checks it before vouching for the table.
type Column struct{ Name, Type string }

// Table says where a source's sessions live and which columns hold them. A
// Column with no Name is one the table does not have.
type Table struct {
	// Name as to_regclass reads it: "sessions" follows the search path,
	// "auth.sessions" names its schema.
	Name string
	// Key names a row's cache entry. It must be in the replica identity,
	// so that a DELETE carries it.
	Key Column
	// KeyIsHash: Key holds the SHA-256 of the token (bytea), which is the
	// cache key itself. Otherwise the cache key is the SHA-256 of the key's
	// text, so Redis never holds a key in clear.
	KeyIsHash bool

	ID, UserID, CreatedAt Column
	ExpiresAt, RevokedAt  Column // either may be absent
	LastActive, AAL       Column // Supabase's refreshed_at and aal
	Own                   bool   // sessionguard's own table: migrate creates it, the admin API inserts into it
}

// Tables by source name.
var tables = map[string]Table{
	Sessionguard: {
		Name: "sessions", Key: Column{"token_hash", "bytea"}, KeyIsHash: true,
		ID: Column{"id", ""}, UserID: Column{"user_id", ""},
		CreatedAt: Column{"created_at", "timestamp with time zone"},
		ExpiresAt: Column{"expires_at", "timestamp with time zone"},
		RevokedAt: Column{"revoked_at", "timestamp with time zone"},
		Own:       true,
	},
	// auth.sessions as the auth server's migrations create it; its default
	// replica identity (the primary key id) names the entry.
	Supabase: {
		Name: "auth.sessions", Key: Column{"id", "uuid"},
		ID: Column{"id", "uuid"}, UserID: Column{"user_id", "uuid"},
		CreatedAt:  Column{"created_at", "timestamp with time zone"},
		ExpiresAt:  Column{"not_after", "timestamp with time zone"},
		LastActive: Column{"refreshed_at", "timestamp without time zone"},
		AAL:        Column{"aal", "auth.aal_level"},
	},
}

// Names lists the sources, sorted.
func Names() []string {
	out := make([]string, 0, len(tables))
	for n := range tables {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TableOf returns the table of a source.
func TableOf(name string) (Table, error) {
	t, ok := tables[name]
	if !ok {
		return Table{}, fmt.Errorf("unknown session source %q (want one of %v)", name, Names())
	}
	return t, nil
}

// Relation is the table's name without its schema.
func (t Table) Relation() string {
	if i := strings.LastIndexByte(t.Name, '.'); i >= 0 {
		return t.Name[i+1:]
	}
	return t.Name
}

// Columns lists the columns the table must have, the key first.
func (t Table) Columns() []Column {
	out := []Column{t.Key}
	for _, c := range []Column{t.ID, t.UserID, t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.LastActive, t.AAL} {
		if c.Name != "" && c.Name != t.Key.Name {
			out = append(out, c)
		}
	}
	return out
}

// HashOf is the cache key of a row whose key column reads raw: the bytes
// themselves when the column holds the hash (ok false unless they are 32),
// else the SHA-256 of the table's name, a NUL and the key's text. The name
// keeps one table's keys apart from another's, and from the hash of a
// presented opaque token (which is never hashed with a prefix).
func (t Table) HashOf(raw []byte) (h session.Hash, ok bool) {
	if !t.KeyIsHash {
		d := sha256.New()
		d.Write([]byte(t.Name))
		d.Write([]byte{0})
		d.Write(raw)
		d.Sum(h[:0])
		return h, true
	}
	if len(raw) != len(h) {
		return h, false
	}
	copy(h[:], raw)
	return h, true
}

// KeyOf is the key of the row whose key column holds value in clear (a
// table whose KeyIsHash is false).
func (t Table) KeyOf(value string) session.Key {
	h, _ := t.HashOf([]byte(value))
	return session.Key{Hash: h, Value: value}
}
