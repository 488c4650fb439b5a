package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/sessionguard/sessionguard/internal/session"
)

func sign(secret, value string, enc *base64.Encoding) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(value))
	return enc.EncodeToString(m.Sum(nil))
}

// credentialsFor is CredentialsOf a named source's table.
func credentialsFor(name string, secret []byte) (Credentials, error) {
	t, err := TableOf(name)
	if err != nil {
		return nil, err
	}
	return CredentialsOf(t, secret)
}

func TestSignedAndClearCredentials(t *testing.T) {
	const secret = "app-secret-of-some-length"
	betterAuth, _ := credentialsFor(BetterAuth, []byte(secret))
	express, _ := credentialsFor(ConnectPgSimple, []byte(secret))
	lucia, _ := credentialsFor(Lucia, nil)
	django, _ := credentialsFor(Django, nil)
	ba, _ := TableOf(BetterAuth)
	cps, _ := TableOf(ConnectPgSimple)
	lt, _ := TableOf(Lucia)
	dj, _ := TableOf(Django)
	token, sid := "Abc123xyzAbc123xyzAbc123xyzAbc12", "Xk9s-QwErTy_12345"
	luciaID := sha256.Sum256([]byte("lucia-token"))
	for _, tc := range []struct {
		name      string
		c         Credentials
		presented string
		want      session.Key // zero: refused
	}{
		{"better auth, signed", betterAuth, token + "." + sign(secret, token, base64.StdEncoding), ba.KeyOf(token)},
		{"better auth, raw", betterAuth, token, ba.KeyOf(token)},
		{"better auth, URL-encoded cookie", betterAuth, url.QueryEscape(token + "." + sign(secret, token, base64.StdEncoding)), ba.KeyOf(token)},
		{"better auth, signed by another secret", betterAuth, token + "." + sign("other", token, base64.StdEncoding), session.Key{}},
		{"better auth, signature of another token", betterAuth, "other." + sign(secret, token, base64.StdEncoding), session.Key{}},
		{"express cookie", express, url.QueryEscape("s:" + sid + "." + sign(secret, sid, base64.RawStdEncoding)), cps.KeyOf(sid)},
		{"express cookie, decoded", express, "s:" + sid + "." + sign(secret, sid, base64.RawStdEncoding), cps.KeyOf(sid)},
		{"express cookie, unsigned", express, sid, session.Key{}},
		{"express cookie, no signature", express, "s:" + sid, session.Key{}},
		{"express cookie, bad signature", express, "s:" + sid + "." + sign("other", sid, base64.RawStdEncoding), session.Key{}},
		{"lucia", lucia, "lucia-token", lt.KeyOf(hex.EncodeToString(luciaID[:]))},
		{"django", django, "abcdefghijklmnopqrstuvwxyz012345", dj.KeyOf("abcdefghijklmnopqrstuvwxyz012345")},
	} {
		c, err := tc.c.Credential(tc.presented)
		switch {
		case tc.want == (session.Key{}):
			if !errors.Is(err, session.ErrRefused) {
				t.Errorf("%s: %+v %v, want refused", tc.name, c, err)
			}
		case err != nil || c.Key != tc.want:
			t.Errorf("%s: %+v %v, want key %+v", tc.name, c.Key, err, tc.want)
		}
	}
	if _, err := credentialsFor(ConnectPgSimple, nil); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("a signed source without a secret: %v", err)
	}
	// One key text, two tables: two cache keys, neither the token's hash.
	if cps.KeyOf(sid).Hash == dj.KeyOf(sid).Hash || cps.KeyOf(sid).Hash == session.HashToken(sid) {
		t.Fatal("cache keys of different tables collide")
	}
}

func TestSplitName(t *testing.T) {
	for name, want := range map[string][2]string{
		"sessions": {"", "sessions"}, "auth.sessions": {"auth", "sessions"}, `"Session"`: {"", "Session"},
		`public."Session"`: {"public", "Session"}, `"a.b"."c""d"`: {"a.b", `c"d`},
	} {
		s, r, err := SplitName(name)
		if err != nil || s != want[0] || r != want[1] {
			t.Errorf("%s: %q %q %v, want %q", name, s, r, err, want)
		}
	}
	for _, bad := range []string{"", "Session", "a.b.c", `"x`, `""`, "a.", ".a", "a b", `"a"b`, "1x"} {
		if _, _, err := SplitName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A table described by settings tags the watermark's identity with how it
// names entries, so processes given different columns do not trust each
// other; a named source needs no tag.
func TestTag(t *testing.T) {
	a, _ := FromMapping(Mapping{Table: "s", Key: "token", Format: FormatRaw})
	a.ID.Name = "id"
	b := a
	b.ID.Name = "token"
	c := a
	c.Zone = "Europe/Berlin"
	if a.Tag() == "" || a.Tag() == b.Tag() || a.Tag() == c.Tag() || a.Tag() != a.Tag() {
		t.Fatalf("tags %q %q %q", a.Tag(), b.Tag(), c.Tag())
	}
	for _, n := range Names() {
		if tb, _ := TableOf(n); tb.Tag() != "" {
			t.Errorf("%s: tag %q", n, tb.Tag())
		}
	}
}
