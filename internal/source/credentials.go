package source

import (
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/session"
)

// MaxJWTLen caps a presented JWT (bytes): user and app metadata can make a
// Supabase access token several KiB.
const MaxJWTLen = 8 << 10

// Opaque reads sessionguard's own tokens: random strings stored as their
// SHA-256.
type Opaque struct{}

// MaxLen is the longest token accepted.
func (Opaque) MaxLen() int { return session.MaxTokenLen }

// Credential hashes the token; it refuses nothing but malformed input.
func (Opaque) Credential(token string) (session.Credential, error) {
	if err := session.CheckToken(token, session.MaxTokenLen); err != nil {
		return session.Credential{}, err
	}
	return session.Credential{Key: session.Key{Hash: session.HashToken(token)}}, nil
}

// Verifier checks a JWT's signature and claims; jwtauth.Verifier is one.
type Verifier interface {
	Verify(token string) (jwtauth.Claims, error)
}

// JWT reads Supabase access tokens: verified first, then their session_id
// names the auth.sessions row.
type JWT struct {
	Verifier Verifier
	// AllowNoSession lets a verified token without session_id (a service
	// key) stand on its own instead of being refused.
	AllowNoSession bool
}

// MaxLen is the longest token accepted.
func (JWT) MaxLen() int { return MaxJWTLen }

// Credential verifies the token. Every refusal wraps session.ErrRefused
// and says why, never quoting the token.
func (j JWT) Credential(token string) (session.Credential, error) {
	if err := session.CheckToken(token, MaxJWTLen); err != nil {
		return session.Credential{}, err
	}
	c, err := j.Verifier.Verify(token)
	switch {
	case errors.Is(err, jwtauth.ErrNoSession):
		if !j.AllowNoSession {
			return session.Credential{}, fmt.Errorf("%w: the token names no session (no session_id claim)", session.ErrRefused)
		}
		return session.Credential{NoSession: true, Subject: c.Subject, Role: c.Role, AAL: c.AAL, ExpiresAt: c.ExpiresAt}, nil
	case err != nil:
		return session.Credential{}, fmt.Errorf("%w: %v", session.ErrRefused, err)
	}
	// The cache key is the hash of the id's text: one canonical form, or
	// the same session would have two entries and a delete drop only one.
	id, err := uuid.Parse(c.SessionID)
	if err != nil {
		return session.Credential{}, fmt.Errorf("%w: session_id is not a uuid", session.ErrRefused)
	}
	return session.Credential{Key: session.KeyOf(id.String()), Subject: c.Subject, Role: c.Role, AAL: c.AAL, ExpiresAt: c.ExpiresAt}, nil
}
