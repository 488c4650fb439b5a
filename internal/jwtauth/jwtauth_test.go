package jwtauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
)

var secret = []byte("super-secret-jwt-token-with-at-least-32-characters-long")

// claims are those of a Supabase user access token.
func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "5f6c1f3e-0000-4000-8000-000000000001", "aud": "authenticated", "role": "authenticated",
		"aal": "aal1", "session_id": "8b2d1c7a-0000-4000-8000-000000000002",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "email": "a@example.com",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keySet is a JWKS document of public keys.
func keySet(t *testing.T, keys map[string]any) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, k := range keys {
		alg := jwkset.AlgRS256
		if _, ok := k.(*ecdsa.PublicKey); ok {
			alg = jwkset.AlgES256
		}
		j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a key set that the test can replace (rotation).
type jwksServer struct {
	mu  sync.Mutex
	doc []byte
	*httptest.Server
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	s := &jwksServer{doc: doc}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte) { s.mu.Lock(); s.doc = doc; s.mu.Unlock() }

func TestVerify(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := newJWKSServer(t, keySet(t, map[string]any{"rsa1": &rsaKey.PublicKey, "ec1": &ecKey.PublicKey}))
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: secret, JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name  string
		token string
		want  error // nil: valid
	}{
		{"HS256 with the secret", sign(t, jwt.SigningMethodHS256, secret, "", claims(nil)), nil},
		{"RS256 from the key set", sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(nil)), nil},
		{"ES256 from the key set", sign(t, jwt.SigningMethodES256, ecKey, "ec1", claims(nil)), nil},
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-enough-length-1234567"), "", claims(nil)), jwtauth.ErrInvalid},
		{"RS256 by a key not in the set", sign(t, jwt.SigningMethodRS256, otherRSA, "rsa1", claims(nil)), jwtauth.ErrInvalid},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["aud"] = "service" })), jwtauth.ErrInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), jwtauth.ErrInvalid},
		{"no expiry", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { delete(c, "exp") })), jwtauth.ErrInvalid},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), jwtauth.ErrInvalid},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil)), jwtauth.ErrInvalid},
		// HS/RS confusion: HS256 keyed with the public key's PEM, which an
		// attacker knows; it must never be tried as an HMAC key.
		{"HS256 keyed with the public key", sign(t, jwt.SigningMethodHS256, pubPEM, "rsa1", claims(nil)), jwtauth.ErrInvalid},
		{"RS384 (not accepted)", sign(t, jwt.SigningMethodRS384, rsaKey, "rsa1", claims(nil)), jwtauth.ErrInvalid},
		{"unknown key id", sign(t, jwt.SigningMethodRS256, otherRSA, "nope", claims(nil)), jwtauth.ErrInvalid},
		{"not a JWT", "abc.def", jwtauth.ErrInvalid},
		{"service key without session", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { delete(c, "session_id") })), jwtauth.ErrNoSession},
		{"no audience, no session (a service key)", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { delete(c, "session_id"); delete(c, "aud") })), jwtauth.ErrNoSession},
		{"no audience with a session", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { delete(c, "aud") })), jwtauth.ErrInvalid},
		{"wrong audience without a session", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { delete(c, "session_id"); c["aud"] = "x" })), jwtauth.ErrInvalid},
		{"audience list holding ours", sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["aud"] = []string{"x", "authenticated"} })), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.SessionID != "8b2d1c7a-0000-4000-8000-000000000002" || c.Subject == "" || c.Role != "authenticated" || c.AAL != "aal1" || c.ExpiresAt.IsZero() {
					t.Fatalf("claims %+v", c)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// Without a secret, HS256 is refused outright; without a key set, RS256.
func TestAlgorithmsFollowTheKeys(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	srv := newJWKSServer(t, keySet(t, map[string]any{"rsa1": &rsaKey.PublicKey}))
	onlyJWKS, err := jwtauth.New(context.Background(), jwtauth.Options{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onlyJWKS.Verify(sign(t, jwt.SigningMethodHS256, secret, "", claims(nil))); !errors.Is(err, jwtauth.ErrInvalid) {
		t.Fatalf("HS256 without a secret: %v", err)
	}
	onlySecret, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onlySecret.Verify(sign(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims(nil))); !errors.Is(err, jwtauth.ErrInvalid) {
		t.Fatalf("RS256 without a key set: %v", err)
	}
	if _, err := jwtauth.New(context.Background(), jwtauth.Options{}); err == nil {
		t.Fatal("a verifier without keys was built")
	}
	if _, err := jwtauth.New(context.Background(), jwtauth.Options{JWKSURL: "ftp://x/jwks.json"}); err == nil {
		t.Fatal("an ftp JWKS URL was accepted")
	}
}

// Key rotation: a token signed by a key published after start is accepted
// once the key set lists it (fetched again on the unknown key id).
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	next, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := newJWKSServer(t, keySet(t, map[string]any{"old": &old.PublicKey}))
	v, err := jwtauth.New(context.Background(), jwtauth.Options{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, old, "old", claims(nil))); err != nil {
		t.Fatal(err)
	}
	srv.set(keySet(t, map[string]any{"old": &old.PublicKey, "next": &next.PublicKey}))
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, next, "next", claims(nil))); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}

	// The same from a file:// key set.
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, keySet(t, map[string]any{"old": &old.PublicKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	fv, err := jwtauth.New(context.Background(), jwtauth.Options{JWKSURL: "file://" + path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fv.Verify(sign(t, jwt.SigningMethodES256, old, "old", claims(nil))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, keySet(t, map[string]any{"old": &old.PublicKey, "next": &next.PublicKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the file is read again at most every second
	if _, err := fv.Verify(sign(t, jwt.SigningMethodES256, next, "next", claims(nil))); err != nil {
		t.Fatalf("token of the rotated-in key from a file: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A key server that takes its time still serves a rotation: the token that
// names the new key waits for the read. Within the next 30 s another
// unknown key id is refused at once, without a request to the server.
func TestJWKSRotationSlowServer(t *testing.T) {
	t.Parallel()
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	next, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var (
		mu   sync.Mutex
		doc  = keySet(t, map[string]any{"old": &old.PublicKey})
		hits int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		hits++
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	v, err := jwtauth.New(context.Background(), jwtauth.Options{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	doc = keySet(t, map[string]any{"old": &old.PublicKey, "next": &next.PublicKey})
	mu.Unlock()
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, next, "next", claims(nil))); err != nil {
		t.Fatalf("token of the rotated-in key from a slow server: %v", err)
	}
	start := time.Now()
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, next, "made-up", claims(nil))); !errors.Is(err, jwtauth.ErrInvalid) {
		t.Fatalf("unknown key id: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if d := time.Since(start); d > 100*time.Millisecond || hits != 2 {
		t.Fatalf("an unknown key id within the allowance took %v and the server saw %d reads, want at once and 2", d, hits)
	}
}
