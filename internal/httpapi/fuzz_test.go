package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// fuzzStore stands in for Postgres (a fuzz target must not need servers):
// it knows one session, for the token "good-token".
type fuzzStore struct{}

var fuzzGood = session.HashToken("good-token")

func (fuzzStore) Lookup(_ context.Context, k session.Key) (pg.Found, error) {
	now := time.Now()
	if k.Hash != fuzzGood {
		return pg.Found{Now: now}, nil
	}
	return pg.Found{Now: now, Session: &session.Session{ID: "00000000-0000-0000-0000-000000000001", UserID: "00000000-0000-0000-0000-000000000002",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}, nil
}

// FuzzValidateRequest feeds arbitrary Authorization headers, cookies and
// bodies to the token parsing and to the validate and forward-auth
// handlers: no panic, never a 5xx, always a JSON error body on failure, and
// a token is only ever accepted when it is well-formed.
func FuzzValidateRequest(f *testing.F) {
	for _, s := range []struct {
		auth, cookie, body string
	}{
		{"Bearer good-token", "", ""},
		{"", "good-token", `{"token":"good-token"}`},
		{"Bearer good-token", "", `{"token":"good-token"}`},
		{"Bearer good-token", "", `{"token":"other"}`},
		{"bearer  x", "", `{"token":null}`},
		{"Basic dTpw", "x", `{"token":5}`},
		{"Bearer ", "", `{"token":""}`},
		{"", "", `{"token":"a"} {"token":"b"}`},
		{"", "", `[1,2,3]`},
		{"", "", `{"token":"\u0000\ud800"}`},
		{"", "", `{"token":"x","token":"y"}`},
		{"", "", strings.Repeat(`{"a":`, 500)},
		{"", "", `{"token":"` + strings.Repeat("x", 1025) + `"}`},
		{"", "", strings.Repeat(" ", 17000)},
		{"Bearer\tgood-token", "", "\xff\xfe"},
	} {
		f.Add(s.auth, s.cookie, []byte(s.body))
	}
	h := New(Options{Service: validation.New(fuzzStore{}, validation.Options{})})

	f.Fuzz(func(t *testing.T, auth, cookie string, body []byte) {
		tok, aerr := parseValidateRequest(auth, body, session.MaxTokenLen)
		if aerr == nil {
			if session.CheckToken(tok, session.MaxTokenLen) != nil {
				t.Fatalf("accepted a malformed token %q", tok)
			}
		} else if aerr.Status < 400 || aerr.Status > 499 || aerr.Code == "" {
			t.Fatalf("parse error %+v is not a 4xx with a code", aerr)
		}

		req := httptest.NewRequest("POST", "/v1/sessions/validate", bytes.NewReader(body))
		req.Header["Authorization"] = []string{auth}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge)
		if len(body) > MaxBodyBytes {
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("a %d-byte body got %d, want 413", len(body), rec.Code)
			}
		} else if aerr != nil && rec.Code != aerr.Status {
			t.Fatalf("handler answered %d, parser said %d", rec.Code, aerr.Status)
		}

		req = httptest.NewRequest("GET", "/v1/auth", bytes.NewReader(body))
		req.Header["Authorization"] = []string{auth}
		req.Header["Cookie"] = []string{"session=" + cookie}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, http.StatusOK, http.StatusUnauthorized)
	})
}

// FuzzCreateRequest: the admin create body parser never panics, and what it
// accepts is a canonical UUID and a TTL within bounds.
func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"7d444840-9dc0-11d1-b245-5ffdce74fad2"}`,
		`{"user_id":"7D444840-9DC0-11D1-B245-5FFDCE74FAD2","ttl":"1h"}`,
		`{"user_id":"7d444840-9dc0-11d1-b245-5ffdce74fad2","ttl":"-1h"}`,
		`{"user_id":"7d444840-9dc0-11d1-b245-5ffdce74fad2","ttl":"999ms"}`,
		`{"user_id":"7d444840-9dc0-11d1-b245-5ffdce74fad2","ttl":"9999999999h"}`,
		`{"user_id":"{7d444840-9dc0-11d1-b245-5ffdce74fad2}"}`,
		`{"user_id":42}`, `{"tll":"1h"}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, aerr := parseCreateRequest(body)
		if aerr != nil {
			if aerr.Status != http.StatusBadRequest {
				t.Fatalf("status %d", aerr.Status)
			}
			return
		}
		if len(req.UserID) != 36 || strings.ToLower(req.UserID) != req.UserID {
			t.Fatalf("user id %q not canonical", req.UserID)
		}
		if req.TTL < MinTTL || req.TTL > MaxTTL {
			t.Fatalf("ttl %v out of bounds", req.TTL)
		}
	})
}

func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	ok := false
	for _, c := range allowed {
		ok = ok || rec.Code == c
	}
	if !ok {
		t.Fatalf("status %d (body %s), want one of %v", rec.Code, rec.Body, allowed)
	}
	if rec.Code != http.StatusOK && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("status %d with a non-JSON body %q", rec.Code, rec.Body)
	}
}
