package source

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Generic is the name of the source described by settings (SESSION_TABLE_*).
const Generic = "table"

// Key formats of a Mapping: how a presented credential maps to the key
// column.
const (
	FormatSHA256 = "sha256" // the column holds the token's SHA-256: bytea, or lower-case hex text
	FormatRaw    = "raw"    // the column holds the token itself
	FormatSigned = "signed" // express-session's signed cookie s:<value>.<signature>; the column holds the value

	// Formats of named sources only.
	FormatSignedToken = "signed-token" // Better Auth's <token>.<signature>, or the raw token
	FormatJWT         = "jwt"          // a verified JWT whose session_id is the key (Supabase)
)

// Mapping describes a sessions table by its column names (SESSION_TABLE_*);
// the types come from the catalog (see pg.ResolveTable). Empty names are
// columns the table does not have.
type Mapping struct {
	Table, Key, Format                                      string
	ID, User, Created, Expires, Revoked, Active, LastActive string
}

// Tag distinguishes, in the watermark's identity (pg.IdentitySQL), tables
// described by settings that name entries differently: the key and id
// columns, the key's form and the zone are settings each process is given,
// and a validator and an invalidator that disagree on them would name
// different cache entries. "" for the named sources, which cannot disagree.
func (t Table) Tag() string {
	if !t.Mapped {
		return ""
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%t\x00%t\x00%t\x00%s", t.Key.Name, t.ID.Name, t.Format, t.KeyIsHash, t.ByID, t.SecretID, t.Zone)))
	return "#" + hex.EncodeToString(h[:6])
}

// CheckRule says which column a timeout needs that the table lacks: the
// timebox counts from the creation time, the inactivity timeout from the
// last activity, else the creation time.
func (t Table) CheckRule(timebox, inactivity time.Duration) error {
	switch {
	case timebox > 0 && t.CreatedAt.Name == "":
		return errors.New("SESSION_TIMEBOX needs a creation time column (SESSION_TABLE_CREATED), or every session would be refused")
	case inactivity > 0 && t.CreatedAt.Name == "" && t.LastActive.Name == "":
		return errors.New("SESSION_INACTIVITY_TIMEOUT needs a last activity or creation time column (SESSION_TABLE_LAST_ACTIVE, SESSION_TABLE_CREATED), or every session would be refused")
	}
	return nil
}

// FromMapping is the table a Mapping describes, its column types still
// unknown. The key format decides the credentials (CredentialsOf).
func FromMapping(m Mapping) (Table, error) {
	if m.Table == "" {
		return Table{}, errors.New("SESSION_TABLE is required with SESSION_SOURCE=table: the sessions table, [schema.]name")
	}
	if _, _, err := SplitName(m.Table); err != nil {
		return Table{}, fmt.Errorf("SESSION_TABLE: %w", err)
	}
	if m.Key == "" {
		return Table{}, errors.New("SESSION_TABLE_KEY is required with SESSION_SOURCE=table: the column the presented token maps to")
	}
	switch m.Format {
	case FormatSHA256, FormatRaw, FormatSigned:
	default:
		return Table{}, fmt.Errorf("SESSION_TABLE_KEY_FORMAT must be %s, %s or %s", FormatSHA256, FormatRaw, FormatSigned)
	}
	if m.Revoked != "" && m.Active != "" {
		return Table{}, errors.New("set SESSION_TABLE_REVOKED or SESSION_TABLE_ACTIVE, not both")
	}
	col := func(name string) Column { return Column{Name: name} }
	return Table{
		Name: m.Table, Key: col(m.Key), ID: col(m.ID), UserID: col(m.User), CreatedAt: col(m.Created),
		ExpiresAt: col(m.Expires), RevokedAt: col(m.Revoked), Active: col(m.Active), LastActive: col(m.LastActive),
		Format: m.Format, Mapped: true, Maker: "your app", Cookie: "session",
	}, nil
}
