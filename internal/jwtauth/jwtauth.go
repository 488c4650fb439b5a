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
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
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
	// https://, http:// (fetched every 10 minutes, and on an unknown key id
	// at most every 30 seconds; a token with an unknown key id never waits
	// for that allowance) or file:// (read again on an unknown key id, at
	// most every second).
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
	jwks   keyfunc.Keyfunc // http(s) key set; nil when none
	file   *fileKeys       // file:// key set; nil when none
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
		switch u.Scheme {
		case "https", "http":
			f := false
			if v.jwks, err = keyfunc.NewDefaultOverrideCtx(ctx, []string{o.JWKSURL}, keyfunc.Override{
				NoErrorReturnFirstHTTPReq: &f,
				HTTPTimeout:               5 * time.Second,
				RefreshInterval:           10 * time.Minute,
				RefreshUnknownKID:         rate.NewLimiter(rate.Every(30*time.Second), 1),
				// Tokens naming unknown keys (forged ones, say) must not
				// queue behind the limiter.
				RateLimitWaitMax: time.Millisecond,
				RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
					return func(_ context.Context, err error) {
						o.Logger.Warn("JWKS refresh failed; verifying with the keys last fetched", zap.String("jwks_url", u), zap.Error(err))
					}
				},
			}); err != nil {
				return nil, fmt.Errorf("jwtauth: load JWKS from %s: %w", o.JWKSURL, err)
			}
		case "file":
			v.file = &fileKeys{path: u.Path}
			if err := v.file.load(); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("jwtauth: JWKS URL must be https://, http:// or file://, not %q", u.Scheme)
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
		switch {
		case v.jwks != nil:
			return v.jwks.Keyfunc(t)
		case v.file != nil:
			return v.file.keyfunc(t)
		}
		return nil, fmt.Errorf("%s is not accepted: no JWKS configured", t.Method.Alg())
	}
	return nil, fmt.Errorf("algorithm %s is not accepted", t.Method.Alg())
}

// fileKeys is a key set read from a file, read again when a token names a
// key it does not hold (rotation), at most every second.
type fileKeys struct {
	path string
	mu   sync.Mutex
	kf   keyfunc.Keyfunc
	read time.Time
}

func (f *fileKeys) load() error {
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("jwtauth: read JWKS file: %w", err)
	}
	kf, err := keyfunc.NewJWKSetJSON(json.RawMessage(raw))
	if err != nil {
		return fmt.Errorf("jwtauth: JWKS file %s: %w", f.path, err)
	}
	f.kf, f.read = kf, time.Now()
	return nil
}

func (f *fileKeys) keyfunc(t *jwt.Token) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, err := f.kf.Keyfunc(t)
	if err == nil || time.Since(f.read) < time.Second {
		return key, err
	}
	if lerr := f.load(); lerr != nil {
		return nil, lerr
	}
	return f.kf.Keyfunc(t)
}
