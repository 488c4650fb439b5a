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

// MaxTokenLen caps a presented token (bytes). Longer input is malformed.
const MaxTokenLen = 1024

// ErrMalformedToken reports a token that is empty or too long.
var ErrMalformedToken = errors.New("malformed token")

// Hash is the SHA-256 of a token's bytes: the only form in which a token is
// stored, cached or looked up.
type Hash [32]byte

// HashToken returns the SHA-256 of token.
func HashToken(token string) Hash { return sha256.Sum256([]byte(token)) }

// Hex is the lowercase hex form used in cache keys.
func (h Hash) Hex() string { return hex.EncodeToString(h[:]) }

// CheckToken reports whether a presented token is well-formed: non-empty and
// at most MaxTokenLen bytes. It says nothing of validity.
func CheckToken(token string) error {
	if token == "" || len(token) > MaxTokenLen {
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

// Session is one row of the sessions table, less the token hash.
type Session struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"-"`
}

// ValidAt applies the validity rule: not revoked and expires_at after now.
func (s *Session) ValidAt(now time.Time) bool {
	return s != nil && s.RevokedAt == nil && s.ExpiresAt.After(now)
}
