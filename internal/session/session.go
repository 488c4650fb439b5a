// Package session holds the domain: what a session is, when it is valid, and
// how tokens are made and hashed. It does no I/O.
package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"
)

// MaxTokenLen caps a presented opaque token (bytes). Longer input is
// malformed. A source with bigger credentials (JWTs) sets its own cap.
const MaxTokenLen = 1024

// ErrMalformedToken reports a token that is empty or too long.
var ErrMalformedToken = errors.New("malformed token")

// Hash is the SHA-256 of a token's bytes (or of a session key's text): the
// only form in which a credential is cached or logged.
type Hash [32]byte

// HashToken returns the SHA-256 of token.
func HashToken(token string) Hash { return sha256.Sum256([]byte(token)) }

// Hex is the lowercase hex form used in cache keys.
func (h Hash) Hex() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a Hash back from its Hex form.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, errors.New("hash: not 64 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("hash: not 64 hex digits")
	}
	return h, nil
}

// CheckToken reports whether a presented token is well-formed: non-empty and
// at most max bytes. It says nothing of validity.
func CheckToken(token string, max int) error {
	if token == "" || len(token) > max {
		return ErrMalformedToken
	}
	return nil
}

// NewToken returns a fresh token: 32 bytes from crypto/rand, base64url
// without padding.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Session is one row of a sessions table, less its key. Fields a table does
// not have stay zero.
type Session struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"` // zero: no expiry of its own
	RevokedAt *time.Time `json:"-"`
	// LastActive is when the session was last refreshed (Supabase's
	// refreshed_at); zero: never, or not tracked.
	LastActive time.Time `json:"-"`
	// AAL is the authenticator assurance level the row grants ("aal1",
	// "aal2"); "" when the table has none.
	AAL string `json:"-"`
}

// ValidAt applies the row's own validity rule: not revoked, and before
// expires_at when it has one. A Rule adds the deployment's timeouts.
func (s *Session) ValidAt(now time.Time) bool {
	return s != nil && s.RevokedAt == nil && (s.ExpiresAt.IsZero() || s.ExpiresAt.After(now))
}
