package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The pieces of a Supabase sign-in the auth server hands to a browser,
// built the way its client libraries store them.

// ssrCookieName is the session cookie @supabase/ssr writes for a project
// served from localhost (sb-<project ref>-auth-token).
const ssrCookieName = "sb-localhost-auth-token"

// forge returns token with the first character of its signature changed:
// well formed, same header and claims, a signature that does not verify.
// The first character is the one to change: it encodes six whole bits of
// the signature, where the last one's spare bits may decode to the same
// bytes.
func forge(token string) (string, error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 || i == len(token)-1 {
		return "", errors.New("forge: not a signed JWT")
	}
	b := []byte(token)
	if b[i+1] == 'A' {
		b[i+1] = 'B'
	} else {
		b[i+1] = 'A'
	}
	return string(b), nil
}

// ssrSession is the session JSON @supabase/ssr keeps in its cookie.
type ssrSession struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    int64   `json:"expires_in"`
	ExpiresAt    int64   `json:"expires_at"`
	RefreshToken string  `json:"refresh_token"`
	User         ssrUser `json:"user"`
}

type ssrUser struct {
	ID    string `json:"id"`
	Aud   string `json:"aud"`
	Role  string `json:"role"`
	Email string `json:"email"`
}

// ssrCookie is the session cookie of a browser signed in as userID with
// accessToken (valid until expiresAt): "base64-" then the base64url of
// the session JSON, as @supabase/ssr writes it.
func ssrCookie(userID, accessToken string, expiresAt time.Time) (*http.Cookie, error) {
	refresh, err := refreshToken()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(ssrSession{
		AccessToken: accessToken, TokenType: "bearer",
		ExpiresIn: int64(time.Until(expiresAt).Round(time.Second).Seconds()), ExpiresAt: expiresAt.Unix(),
		RefreshToken: refresh,
		User:         ssrUser{ID: userID, Aud: "authenticated", Role: "authenticated", Email: userID + "@example.com"},
	})
	if err != nil {
		return nil, fmt.Errorf("session cookie: %w", err)
	}
	return &http.Cookie{Name: ssrCookieName, Value: "base64-" + base64.RawURLEncoding.EncodeToString(raw)}, nil
}

// refreshToken is a refresh token shaped like the auth server's (12
// characters); nothing in the demo accepts it.
func refreshToken() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("refresh token: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}
