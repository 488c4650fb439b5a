package jwtauth_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
)

func request(cookies map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/auth", nil)
	for n, v := range cookies {
		r.AddCookie(&http.Cookie{Name: n, Value: v})
	}
	return r
}

func TestCookieAccessToken(t *testing.T) {
	t.Parallel()
	name := "sb-abcdefghijklmnopqrst-auth-token"
	if name != "sb-abcdefghijklmnopqrst-auth-token" {
		t.Fatalf("cookie name %q", name)
	}
	const token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	session := `{"access_token":"` + token + `","token_type":"bearer","expires_in":3600,"refresh_token":"r1",` +
		`"user":{"id":"u","user_metadata":{"bio":"` + strings.Repeat("x", 4000) + `"}}}`
	b64 := "base64-" + base64.RawURLEncoding.EncodeToString([]byte(session))
	chunks := map[string]string{}
	for i := 0; i*3180 < len(b64); i++ {
		chunks[name+"."+strconv.Itoa(i)] = b64[i*3180 : min(len(b64), (i+1)*3180)]
	}
	if len(chunks) < 2 {
		t.Fatal("the test needs a chunked cookie")
	}
	for _, tc := range []struct {
		name    string
		cookies map[string]string
		want    string
		err     error // nil with want "": any error
	}{
		{"base64- in one cookie", map[string]string{name: b64}, token, nil},
		{"base64- in chunks", chunks, token, nil},
		{"padded base64", map[string]string{name: "base64-" + base64.URLEncoding.EncodeToString([]byte(session))}, token, nil},
		// JSON in a cookie arrives URL-encoded: its quotes are not cookie
		// octets (net/http drops such a cookie).
		{"URL-encoded JSON", map[string]string{name: url.QueryEscape(`{"access_token":"` + token + `"}`)}, token, nil},
		{"older array form", map[string]string{name: url.QueryEscape(`["` + token + `","refresh",null,null,[]]`)}, token, nil},
		{"no cookie", map[string]string{"session": "x"}, "", jwtauth.ErrNoCookie},
		{"a chunk missing in the middle", map[string]string{name + ".1": "abc"}, "", jwtauth.ErrNoCookie},
		{"bad base64", map[string]string{name: "base64-!!!"}, "", nil},
		{"JSON without token", map[string]string{name: url.QueryEscape(`{"refresh_token":"r"}`)}, "", nil},
		{"plain string", map[string]string{name: "hello"}, "", nil},
		{"too large", map[string]string{name: strings.Repeat("a", 70<<10)}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jwtauth.CookieAccessToken(request(tc.cookies), name)
			switch {
			case tc.want != "":
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want the token", got, err)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
			default:
				if err == nil {
					t.Fatalf("accepted: %q", got)
				}
				if strings.Contains(err.Error(), "hello") || strings.Contains(err.Error(), "refresh") {
					t.Fatalf("error quotes the cookie: %v", err)
				}
			}
		})
	}
}
