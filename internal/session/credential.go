package session

import (
	"errors"
	"time"
)

// ErrRefused reports a credential refused on its own, before any lookup: a
// JWT with a bad signature, the wrong audience, expired, and so on.
var ErrRefused = errors.New("credential refused")

// Key names one session: the cache key, and what the lookup query matches.
type Key struct {
	// Hash names the cache entry: the SHA-256 of the presented token, or,
	// when the table holds the key in clear, of the table's name and the
	// key's text (source.Table.KeyOf).
	Hash Hash
	// Value is the key column's text when the table holds the key in clear
	// (Supabase's session id); "" when the column holds Hash itself.
	Value string
}

// Credential is what a presented token proved before any lookup: the session
// it names and, for a signed token, what it claims.
type Credential struct {
	Key Key
	// NoSession: a verified token that names no session (a Supabase service
	// key) and is allowed to stand on its own; nothing is looked up.
	NoSession bool
	// Claims of a signed token; all zero for an opaque token.
	Subject   string    // the user the token is for ("sub")
	Role      string    // "role"
	AAL       string    // "aal"
	ExpiresAt time.Time // "exp"; zero: none
}

// Admits reports whether the session row backs what the credential claims:
// the same user, and at least the assurance level claimed (a session
// downgraded to aal1, after its MFA factor was removed, no longer backs an
// aal2 token).
func (c Credential) Admits(s *Session) bool {
	if s == nil {
		return false
	}
	if c.Subject != "" && s.UserID != c.Subject {
		return false
	}
	return c.AAL == "" || aalRank(s.AAL) >= aalRank(c.AAL)
}

// aalRank orders assurance levels; an absent level is aal1, as the auth
// server reads it.
func aalRank(aal string) int {
	switch aal {
	case "aal3":
		return 3
	case "aal2":
		return 2
	}
	return 1
}

// Rule is the validity rule of a deployment: the row's own (ValidAt) and the
// session timeouts the auth server applies without writing the row, so no
// event ever marks them.
type Rule struct {
	// Timebox ends every session this long after its creation (0: never).
	Timebox time.Duration
	// Inactivity ends a session this long after it was last refreshed, or
	// created if never (0: never).
	Inactivity time.Duration
}

// Valid reports whether s is valid at now under the rule. A session is
// invalid once now is after a deadline.
func (r Rule) Valid(s *Session, now time.Time) bool {
	if !s.ValidAt(now) {
		return false
	}
	if r.Timebox > 0 && now.After(s.CreatedAt.Add(r.Timebox)) {
		return false
	}
	return r.Inactivity <= 0 || !now.After(s.lastActive().Add(r.Inactivity))
}

// Deadline is the earliest moment the session stops being valid with this
// credential, as far as anything known now says: its expiry, the timeouts'
// ends and the credential's own expiry. Zero: none of them is set.
func (r Rule) Deadline(s *Session, c Credential) time.Time {
	var d time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	earlier(s.ExpiresAt)
	earlier(c.ExpiresAt)
	if r.Timebox > 0 {
		earlier(s.CreatedAt.Add(r.Timebox))
	}
	if r.Inactivity > 0 {
		earlier(s.lastActive().Add(r.Inactivity))
	}
	return d
}

func (s *Session) lastActive() time.Time {
	if s.LastActive.IsZero() {
		return s.CreatedAt
	}
	return s.LastActive
}
