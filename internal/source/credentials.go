package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

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

// Clear reads tokens that a table holds as they are (Kratos's session
// token, Django's session key) or, with Hex, as the lowercase hex SHA-256 of
// the token (Lucia's session id). The cache key is still a hash.
type Clear struct {
	Table Table
	Hex   bool
}

// MaxLen is the longest token accepted.
func (Clear) MaxLen() int { return session.MaxTokenLen }

// Credential names the row the token names; it refuses nothing but
// malformed input.
func (c Clear) Credential(token string) (session.Credential, error) {
	if err := session.CheckToken(token, session.MaxTokenLen); err != nil {
		return session.Credential{}, err
	}
	if c.Hex {
		h := sha256.Sum256([]byte(token))
		token = hex.EncodeToString(h[:])
	}
	return clearKey(c.Table, token)
}

// Signed reads a token presented with an HMAC-SHA256 signature of it under
// the app's secret, and refuses a bad signature before any lookup:
//   - express-session's cookie (connect-pg-simple), "s:<sid>.<signature>"
//     with the signature in base64 without padding, and the cookie's URL
//     encoding undone (Prefix "s:", Raw false);
//   - Better Auth's "<token>.<signature>", the signature in standard
//     base64; a token without a signature is accepted too, as Better Auth
//     accepts it (Raw true).
type Signed struct {
	Table  Table
	Secret []byte
	Prefix string
	Raw    bool
}

// MaxLen is the longest token accepted.
func (Signed) MaxLen() int { return session.MaxTokenLen }

// Credential verifies the signature and names the row of the token.
func (s Signed) Credential(presented string) (session.Credential, error) {
	if err := session.CheckToken(presented, session.MaxTokenLen); err != nil {
		return session.Credential{}, err
	}
	if v, err := url.PathUnescape(presented); err == nil {
		presented = v
	}
	rest, ok := strings.CutPrefix(presented, s.Prefix)
	i := strings.LastIndexByte(rest, '.')
	switch {
	case !ok:
		return session.Credential{}, fmt.Errorf("%w: not a signed value (no %q prefix)", session.ErrRefused, s.Prefix)
	case i < 0 && s.Raw:
		return clearKey(s.Table, rest)
	case i < 0:
		return session.Credential{}, fmt.Errorf("%w: no signature", session.ErrRefused)
	}
	token, sig := rest[:i], rest[i+1:]
	mac := hmac.New(sha256.New, s.Secret)
	mac.Write([]byte(token))
	want := mac.Sum(nil)
	got, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(sig, "="))
	if err != nil || !hmac.Equal(got, want) || token == "" {
		return session.Credential{}, fmt.Errorf("%w: bad signature", session.ErrRefused)
	}
	return clearKey(s.Table, token)
}

// clearKey is the credential of a key the table holds in clear. A uuid key
// is read in its one canonical form: the stream carries that form, so a
// key spelt another way would name another cache entry.
func clearKey(t Table, key string) (session.Credential, error) {
	if t.Key.Type == "uuid" {
		u, err := uuid.Parse(key)
		if err != nil {
			return session.Credential{}, fmt.Errorf("%w: the key is not a uuid", session.ErrRefused)
		}
		key = u.String()
	}
	return session.Credential{Key: t.KeyOf(key)}, nil
}

// Credentials reads a source's presented tokens.
type Credentials interface {
	Credential(token string) (session.Credential, error)
	MaxLen() int
}

// NeedsSecret reports whether a table's tokens are signed with the app's
// secret (SESSION_COOKIE_SECRET).
func NeedsSecret(t Table) bool { return t.Format == FormatSigned || t.Format == FormatSignedToken }

// CredentialsOf returns how the tokens of table t (a named source's, or
// one described by settings with its types resolved) are read, by its key
// format; secret is the app's (NeedsSecret). JWTs need a verifier: use JWT.
func CredentialsOf(t Table, secret []byte) (Credentials, error) {
	if NeedsSecret(t) && len(secret) == 0 {
		return nil, errors.New("signed session tokens need SESSION_COOKIE_SECRET, the app's secret they are signed with")
	}
	switch t.Format {
	case FormatSHA256:
		if t.KeyIsHash {
			return Opaque{}, nil
		}
		return Clear{Table: t, Hex: true}, nil
	case FormatRaw:
		return Clear{Table: t}, nil
	case FormatSigned:
		return Signed{Table: t, Secret: secret, Prefix: "s:"}, nil
	case FormatSignedToken:
		return Signed{Table: t, Secret: secret, Raw: true}, nil
	}
	return nil, fmt.Errorf("table %s: its tokens are %s, read by JWT", t.Name, t.Format)
}
