package source

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/session"
)

// claimsProblem says what is wrong with verified claims the validator
// forwards (in headers) or compares: "" when nothing is. The auth server
// issues none of these, so a token carrying one is refused rather than
// passed on.
func claimsProblem(c jwtauth.Claims) string {
	switch {
	case !visibleASCII(c.Subject) || !visibleASCII(c.Role):
		return "sub or role holds characters other than visible ASCII"
	case c.AAL != "" && c.AAL != "aal1" && c.AAL != "aal2" && c.AAL != "aal3":
		return "aal is not aal1, aal2 or aal3"
	}
	return ""
}

// visibleASCII reports whether s is printable ASCII without spaces, safe in
// an HTTP header value.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

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
	// SessionlessRoles lets a verified token without session_id (Supabase's
	// service key: role service_role) stand on its own when its role is
	// listed; any other is refused.
	SessionlessRoles []string
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
	if err == nil || errors.Is(err, jwtauth.ErrNoSession) {
		if why := claimsProblem(c); why != "" {
			return session.Credential{}, fmt.Errorf("%w: %s", session.ErrRefused, why)
		}
	}
	switch {
	case errors.Is(err, jwtauth.ErrNoSession):
		if c.Role == "" || !slices.Contains(j.SessionlessRoles, c.Role) {
			return session.Credential{}, fmt.Errorf("%w: the token names no session (no session_id claim) and its role is not one allowed without", session.ErrRefused)
		}
		return session.Credential{NoSession: true, Subject: c.Subject, Role: c.Role, AAL: c.AAL, ExpiresAt: c.ExpiresAt}, nil
	case err != nil:
		return session.Credential{}, fmt.Errorf("%w: %v", session.ErrRefused, err)
	case c.Subject == "":
		// Every user token of the auth server has one; the row's user is
		// checked against it.
		return session.Credential{}, fmt.Errorf("%w: a token with a session but no sub", session.ErrRefused)
	}
	// The cache key is the hash of the id's text: one canonical form, or
	// the same session would have two entries and a delete drop only one.
	id, err := uuid.Parse(c.SessionID)
	if err != nil {
		return session.Credential{}, fmt.Errorf("%w: session_id is not a uuid", session.ErrRefused)
	}
	return session.Credential{Key: tables[Supabase].KeyOf(id.String()), Subject: c.Subject, Role: c.Role, AAL: c.AAL, ExpiresAt: c.ExpiresAt}, nil
}
