package jwtauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Limits of a session cookie: the auth helpers split a cookie above about
// 3,180 bytes, so a few chunks hold any real session.
const (
	maxCookieChunks = 16
	maxCookieBytes  = 64 << 10
)

// ErrNoCookie: the request carries no session cookie of that name.
var ErrNoCookie = errors.New("no session cookie")

// ErrSeveralCookies: the request carries several projects' session
// cookies, and no name says which to read.
var ErrSeveralCookies = errors.New("several Supabase session cookies (sb-<ref>-auth-token): set SUPABASE_COOKIE to the one to read")

// FindSupabaseCookie names the one Supabase session cookie the request
// carries (sb-<ref>-auth-token, whole or chunked): ErrNoCookie when there is
// none, ErrSeveralCookies when there are several projects'.
func FindSupabaseCookie(r *http.Request) (string, error) {
	name := ""
	for _, c := range r.Cookies() {
		base := c.Name
		if i := strings.LastIndexByte(base, '.'); i >= 0 {
			if _, err := strconv.Atoi(base[i+1:]); err == nil {
				base = base[:i]
			}
		}
		if !strings.HasPrefix(base, "sb-") || !strings.HasSuffix(base, "-auth-token") || len(base) <= len("sb--auth-token") {
			continue
		}
		if name != "" && name != base {
			return "", ErrSeveralCookies
		}
		name = base
	}
	if name == "" {
		return "", ErrNoCookie
	}
	return name, nil
}

// CookieAccessToken returns the access token held in the session cookie
// name, in the forms Supabase's helpers write:
//   - one cookie, or chunks name.0, name.1, … joined in order;
//   - "base64-" then base64url of the session JSON (@supabase/ssr), or the
//     JSON itself, URL-encoded (its quotes are not cookie octets);
//   - the JSON an object with "access_token", or an array whose first
//     element is the access token (older auth helpers).
//
// Anything else is an error that says what is wrong, never the value.
func CookieAccessToken(r *http.Request, name string) (string, error) {
	raw, err := joinChunks(r, name)
	if err != nil {
		return "", err
	}
	doc := raw
	if b64, ok := strings.CutPrefix(raw, "base64-"); ok {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "="))
		if err != nil {
			return "", errors.New("session cookie: base64- value does not decode")
		}
		doc = string(b)
	} else if strings.HasPrefix(raw, "%") {
		if doc, err = url.QueryUnescape(raw); err != nil {
			return "", errors.New("session cookie: bad URL encoding")
		}
	}
	doc = strings.TrimSpace(doc)
	switch {
	case strings.HasPrefix(doc, "{"):
		var s struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal([]byte(doc), &s); err != nil || s.AccessToken == "" {
			return "", errors.New("session cookie: JSON without an access_token")
		}
		return s.AccessToken, nil
	case strings.HasPrefix(doc, "["):
		var a []json.RawMessage
		var tok string
		if err := json.Unmarshal([]byte(doc), &a); err != nil || len(a) == 0 || json.Unmarshal(a[0], &tok) != nil || tok == "" {
			return "", errors.New("session cookie: JSON array without an access token first")
		}
		return tok, nil
	}
	return "", errors.New("session cookie: neither base64- nor JSON")
}

// joinChunks returns the cookie's value, or its chunks' values joined.
func joinChunks(r *http.Request, name string) (string, error) {
	if c, err := r.Cookie(name); err == nil {
		if len(c.Value) > maxCookieBytes {
			return "", errors.New("session cookie too large")
		}
		return c.Value, nil
	}
	var b strings.Builder
	for i := 0; ; i++ {
		c, err := r.Cookie(name + "." + strconv.Itoa(i))
		if err != nil {
			break
		}
		if i == maxCookieChunks || b.Len()+len(c.Value) > maxCookieBytes {
			return "", errors.New("session cookie too large")
		}
		b.WriteString(c.Value)
	}
	if b.Len() == 0 {
		return "", ErrNoCookie
	}
	return b.String(), nil
}
