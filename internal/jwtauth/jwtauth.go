// Package jwtauth verifies the access tokens of an external auth server
// (the Supabase auth server, say): signature, algorithm pinned to the key's
// type, expiry, not-before and audience. It uses golang-jwt for the checks
// and keyfunc/jwkset for JSON Web Key Sets with key rotation; it writes no
// signature code of its own. cookie.go reads the token out of the session
// cookie Supabase's helpers write. It does no session lookup: a verified
// token's session id is then looked up like any session.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// ErrInvalid wraps every reason a token is refused.
var ErrInvalid = errors.New("invalid access token")

// ErrNoSession: the token is valid but names no session (Supabase's anon
// and service keys, which carry no audience either); the caller refuses it
// unless configured otherwise.
var ErrNoSession = errors.New("access token names no session")

// DefaultAudience is the audience of the Supabase auth server's user tokens.
const DefaultAudience = "authenticated"

// Options configure a Verifier; at least one of Secret and JWKSURL is set.
type Options struct {
	// Secret verifies HS256 tokens (the project's JWT secret); nil: none.
	Secret []byte
	// JWKSURL verifies RS256 and ES256 tokens with the keys it lists:
	// https://, http:// (fetched every 10 minutes, and when a token names a
	// key id the set lacks, at most every 30 seconds) or file:// (read again
	// on an unknown key id, at most every second). See keySet.
	JWKSURL  string
	Audience string        // default DefaultAudience
	Leeway   time.Duration // allowed clock skew on exp and nbf
	Now      func() time.Time
	// Logger receives the JWKS refresh failures (the last keys are kept).
	Logger *zap.Logger
}

// Claims is what the caller needs of a verified token.
type Claims struct {
	Subject   string    // sub: the user id
	SessionID string    // session_id: the auth server's session row
	Role      string    // role
	AAL       string    // aal: aal1 or aal2
	ExpiresAt time.Time // exp
}

// Verifier checks tokens. Safe for concurrent use.
type Verifier struct {
	o      Options
	parser *jwt.Parser
	keys   *keySet // nil when no JWKS URL is set
}

// New returns a Verifier. With an http(s) JWKS URL the first fetch happens
// here and the key set is refreshed until ctx ends.
func New(ctx context.Context, o Options) (*Verifier, error) {
	if len(o.Secret) == 0 && o.JWKSURL == "" {
		return nil, errors.New("jwtauth: neither a secret nor a JWKS URL")
	}
	if o.Audience == "" {
		o.Audience = DefaultAudience
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	v := &Verifier{o: o}
	var methods []string
	if len(o.Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if o.JWKSURL != "" {
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg())
		u, err := url.Parse(o.JWKSURL)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: JWKS URL: %w", err)
		}
		if u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file" {
			return nil, fmt.Errorf("jwtauth: JWKS URL must be https://, http:// or file://, not %q", u.Scheme)
		}
		if v.keys, err = newKeySet(ctx, u, o.Logger); err != nil {
			return nil, err
		}
	}
	// The audience is checked in Verify: a token without a session may lack
	// one (Supabase's service keys), a user's token may not.
	v.parser = jwt.NewParser(jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(), jwt.WithLeeway(o.Leeway), jwt.WithTimeFunc(o.Now))
	return v, nil
}

type tokenClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"session_id"`
	Role      string `json:"role"`
	AAL       string `json:"aal"`
}

// Verify checks token and returns its claims. Every refusal wraps
// ErrInvalid; a valid token without a session id returns ErrNoSession. A
// token with an audience must name Options.Audience; only a token without a
// session id may have none.
func (v *Verifier) Verify(token string) (Claims, error) {
	var tc tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.key); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case len(tc.Audience) == 0 && tc.SessionID != "":
		return Claims{}, fmt.Errorf("%w: no audience", ErrInvalid)
	case len(tc.Audience) > 0 && !slices.Contains(tc.Audience, v.o.Audience):
		return Claims{}, fmt.Errorf("%w: audience is not %q", ErrInvalid, v.o.Audience)
	}
	c := Claims{Subject: tc.Subject, SessionID: tc.SessionID, Role: tc.Role, AAL: tc.AAL}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
	}
	if c.SessionID == "" {
		return c, ErrNoSession
	}
	return c, nil
}

// key picks the verification key by the token's algorithm, so that a key of
// one type is never used for another algorithm: HS256 only ever gets the
// secret, RS256 and ES256 only keys of the key set (golang-jwt then checks
// the key's type against the method).
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		if len(v.o.Secret) == 0 {
			return nil, errors.New("HS256 is not accepted: no JWT secret configured")
		}
		return v.o.Secret, nil
	case jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg():
		if v.keys == nil {
			return nil, fmt.Errorf("%s is not accepted: no JWKS configured", t.Method.Alg())
		}
		return v.keys.keyfunc(t)
	}
	return nil, fmt.Errorf("algorithm %s is not accepted", t.Method.Alg())
}
