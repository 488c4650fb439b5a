// Package source describes the sessions tables sessionguard follows: where
// the rows are, which column names a row's cache entry, which columns hold
// the session, and how a presented credential becomes that key. Each kind of
// table is one Table value and one Credentials; the layers below read them
// rather than branch on a source's name.
package source

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Names of the sources (SESSION_SOURCE).
const (
	Sessionguard    = "sessionguard"      // sessionguard's own sessions table (default)
	Supabase        = "supabase"          // the Supabase auth server's auth.sessions
	BetterAuth      = "better-auth"       // Better Auth's session table
	Kratos          = "kratos"            // Ory Kratos's sessions table
	ConnectPgSimple = "connect-pg-simple" // express-session's store connect-pg-simple
	Django          = "django"            // Django's django_session
	Lucia           = "lucia"             // the table of Lucia's current guide
)

// Column is one column of a sessions table. Type is the type as format_type
// prints it (or any type, when empty); the invalidator checks it before
// vouching for the table.
type Column struct{ Name, Type string }

// Table says where a source's sessions live and which columns hold them. A
// Column with no Name is one the table does not have.
type Table struct {
	// Name as to_regclass reads it: "sessions" follows the search path,
	// "auth.sessions" names its schema, `"public"."Session"` quotes.
	// Cache keys are hashed with it, so every process must spell it alike.
	Name string
	// Key is the column the presented credential maps to: it names a row's
	// cache entry.
	Key Column
	// KeyIsHash: Key holds the SHA-256 of the token (bytea), which is the
	// cache key itself. Otherwise the cache key is the SHA-256 of the key's
	// text (HashOf), so Redis never holds a key in clear.
	KeyIsHash bool
	// ByID: Key is another column than ID, and the replica identity
	// carries ID, so a DELETE names only the id: the cache keeps an index
	// from a hash of the id to the row's entries, added to by each fill
	// (see cache.Op.ID).
	ByID bool
	// SecretID: ID is the credential itself (connect-pg-simple's sid,
	// Django's session_key), so it is shown and cached only as IDHash.
	SecretID bool

	ID, UserID, CreatedAt Column // UserID and CreatedAt may be absent
	ExpiresAt, RevokedAt  Column // either may be absent
	Active                Column // a boolean; false ends the session (Kratos)
	LastActive, AAL       Column // Supabase's refreshed_at and aal
	Own                   bool   // sessionguard's own table: migrate creates it, the admin API inserts into it
	// Maker is what creates and writes the table, for messages ("the
	// Supabase auth server", "Better Auth").
	Maker string
	// UUIDs: the id and user columns hold UUIDs (the admin API checks them).
	UUIDs bool
	// Cookie is the session cookie the maker's apps set by default.
	Cookie string
	// Format is how a presented credential maps to Key: FormatSHA256,
	// FormatRaw, FormatSigned, FormatSignedToken or FormatJWT.
	Format string
	// Mapped: described by settings (Generic), not a named source.
	Mapped bool
	// Zone is the IANA time zone its timestamps without time zone were
	// written in; "" is UTC (what every store writes, but connect-pg-simple
	// on a server in another zone).
	Zone string
}

// Location is Zone as a time.Location (UTC when "", or unknown: the
// settings check the name first).
func (t Table) Location() *time.Location {
	if loc, err := time.LoadLocation(t.Zone); err == nil && t.Zone != "" {
		return loc
	}
	return time.UTC
}

// Time zones: a timestamp without time zone is read as UTC, as each of
// these stores writes it (connect-pg-simple through to_timestamp() on a
// server in UTC; see docs/stores).
const (
	tz  = "timestamp with time zone"
	tsz = "timestamp without time zone"
)

// Tables by source name, each as its project creates it.
var tables = map[string]Table{
	Sessionguard: {
		Name: "sessions", Key: Column{"token_hash", "bytea"}, KeyIsHash: true,
		ID: Column{"id", ""}, UserID: Column{"user_id", ""},
		CreatedAt: Column{"created_at", tz}, ExpiresAt: Column{"expires_at", tz}, RevokedAt: Column{"revoked_at", tz},
		Own: true, Maker: "validator migrate", UUIDs: true, Cookie: "session", Format: FormatSHA256,
	},
	// auth.sessions as the auth server's migrations create it; its default
	// replica identity (the primary key id) names the entry.
	Supabase: {
		Name: "auth.sessions", Key: Column{"id", "uuid"},
		ID: Column{"id", "uuid"}, UserID: Column{"user_id", "uuid"},
		CreatedAt: Column{"created_at", tz}, ExpiresAt: Column{"not_after", tz},
		LastActive: Column{"refreshed_at", tsz}, AAL: Column{"aal", "auth.aal_level"},
		Maker: "the Supabase auth server", UUIDs: true, Cookie: "session", Format: FormatJWT,
	},
	// The raw token in "token", a separate random id as primary key.
	BetterAuth: {
		Name: "session", Key: Column{"token", "text"}, ByID: true,
		ID: Column{"id", "text"}, UserID: Column{"userId", "text"},
		CreatedAt: Column{"createdAt", tz}, ExpiresAt: Column{"expiresAt", tz},
		Maker: "Better Auth", Cookie: "better-auth.session_token", Format: FormatSignedToken,
	},
	// The raw session token in "token"; revoking sets active to false.
	Kratos: {
		Name: "sessions", Key: Column{"token", ""}, ByID: true,
		ID: Column{"id", "uuid"}, UserID: Column{"identity_id", "uuid"},
		CreatedAt: Column{"created_at", tsz}, ExpiresAt: Column{"expires_at", tsz}, Active: Column{"active", "boolean"},
		Maker: "Ory Kratos", UUIDs: true, Cookie: "session", Format: FormatRaw, // API clients send the token as a bearer
	},
	// The sid (the cookie's secret) is the primary key; no user column.
	ConnectPgSimple: {
		Name: "session", Key: Column{"sid", "character varying"}, SecretID: true,
		ID: Column{"sid", "character varying"}, ExpiresAt: Column{"expire", tsz},
		Maker: "connect-pg-simple", Cookie: "connect.sid", Format: FormatSigned,
	},
	Django: {
		Name: "django_session", Key: Column{"session_key", "character varying"}, SecretID: true,
		ID: Column{"session_key", "character varying"}, ExpiresAt: Column{"expire_date", tz},
		Maker: "Django", Cookie: "sessionid", Format: FormatRaw,
	},
	// id is the lowercase hex SHA-256 of the token.
	Lucia: {
		Name: "user_session", Key: Column{"id", "text"},
		ID: Column{"id", "text"}, UserID: Column{"user_id", ""}, ExpiresAt: Column{"expires_at", tz},
		Maker: "your app (Lucia's guide)", Cookie: "session", Format: FormatSHA256,
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

// Relation is the table's name without its schema, as the catalog spells it.
func (t Table) Relation() string {
	_, rel, _ := SplitName(t.Name)
	return rel
}

// Schema is the table's schema as the catalog spells it; "" when its name
// follows the search path.
func (t Table) Schema() string {
	schema, _, _ := SplitName(t.Name)
	return schema
}

// SplitName splits a table name as to_regclass reads it, [schema.]name,
// each part an SQL identifier: lower-case letters, digits, '_' and '$', or
// double-quoted (a quote doubled inside), into the parts as the catalog
// spells them.
func SplitName(name string) (schema, rel string, err error) {
	var parts []string
	for rest := name; ; {
		var part string
		if strings.HasPrefix(rest, `"`) {
			i := 1
			for ; i < len(rest); i++ {
				if rest[i] == '"' {
					if i+1 < len(rest) && rest[i+1] == '"' {
						part += `"`
						i++
						continue
					}
					break
				}
				part += string(rest[i])
			}
			if i >= len(rest) || part == "" {
				return "", "", fmt.Errorf("table name %q: unterminated or empty quoted identifier", name)
			}
			rest = rest[i+1:]
		} else {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				i = len(rest)
			}
			part, rest = rest[:i], rest[i:]
			if !plainIdent(part) {
				return "", "", fmt.Errorf("table name %q: %q is not a lower-case identifier (quote it: \"%s\")", name, part, part)
			}
		}
		parts = append(parts, part)
		if rest == "" {
			break
		}
		if rest[0] != '.' || len(parts) == 2 {
			return "", "", fmt.Errorf("table name %q: want [schema.]name", name)
		}
		rest = rest[1:]
	}
	if len(parts) == 1 {
		return "", parts[0], nil
	}
	return parts[0], parts[1], nil
}

func plainIdent(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') || s[0] == '$' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '$') {
			return false
		}
	}
	return true
}

// Columns lists the columns the table must have, the key first.
func (t Table) Columns() []Column {
	out := []Column{t.Key}
	for _, c := range []Column{t.ID, t.UserID, t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.Active, t.LastActive, t.AAL} {
		if c.Name != "" && c.Name != t.Key.Name && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// Identity is the column a DELETE must carry: ID for a ByID table, else Key.
func (t Table) Identity() Column {
	if t.ByID {
		return t.ID
	}
	return t.Key
}

// IDHash names a row by its primary key in the cache (the id index of a
// ByID table, the shown id of a SecretID one), apart from every key hash.
func (t Table) IDHash(id string) session.Hash {
	var h session.Hash
	d := sha256.New()
	d.Write([]byte(t.Name))
	d.Write([]byte("\x00id\x00"))
	d.Write([]byte(id))
	d.Sum(h[:0])
	return h
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
