package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// TestDemoTokens checks what the Supabase walkthrough shows about its
// tokens: the access token verifies, the forged one (one signature
// character changed, the rest intact) does not, and the SSR cookie carries
// the access token where the validator reads it.
func TestDemoTokens(t *testing.T) {
	t.Parallel()
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: []byte(testenv.SupabaseSecret)})
	if err != nil {
		t.Fatal(err)
	}
	user, sid := testenv.NewUser(), testenv.NewUser()
	token, err := testenv.SupabaseAccessToken([]byte(testenv.SupabaseSecret), user, sid, tokenTTL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(token); err != nil || c.SessionID != sid || c.Subject != user {
		t.Fatalf("Verify(token) = %+v, %v; want session %s of user %s", c, err, sid, user)
	}

	forged, err := forge(token)
	if err != nil {
		t.Fatal(err)
	}
	dot := strings.LastIndexByte(token, '.')
	if len(forged) != len(token) || forged[:dot+1] != token[:dot+1] || forged[dot+2:] != token[dot+2:] || forged[dot+1] == token[dot+1] {
		t.Fatalf("forge changed more or less than the signature's first character:\n%s\n%s", token, forged)
	}
	if _, err := v.Verify(forged); !errors.Is(err, jwtauth.ErrInvalid) {
		t.Errorf("Verify(forged) error = %v, want ErrInvalid", err)
	}
	if _, err := forge("no-signature"); err == nil {
		t.Error("forge accepted a value with no signature")
	}

	cookie, err := ssrCookie(user, token, time.Now().Add(tokenTTL))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cookie.Value, "base64-") || len(cookie.Value) > 3180 {
		t.Errorf("cookie is not one base64- cookie @supabase/ssr would write: %d bytes, %.20q", len(cookie.Value), cookie.Value)
	}
	r, _ := http.NewRequest(http.MethodGet, "http://validator/v1/auth", nil)
	r.AddCookie(cookie)
	name, err := jwtauth.FindSupabaseCookie(r)
	if err != nil || name != ssrCookieName {
		t.Fatalf("FindSupabaseCookie = %q, %v; want %q", name, err, ssrCookieName)
	}
	if got, err := jwtauth.CookieAccessToken(r, name); err != nil || got != token {
		t.Errorf("CookieAccessToken = %.20q, %v; want the access token", got, err)
	}
}
