package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// tokenTTL is how long the access tokens the demo signs live: the auth
// server's default JWT expiry (the walkthrough says "an hour").
const tokenTTL = time.Hour

// supabaseDemo is `make demo-supabase`: the Supabase auth server's
// auth.sessions, its users signed in and out the way the auth server does
// it, with plain SQL, and their HS256 access tokens validated.
type supabaseDemo struct {
	secret string // the project's JWT secret: the demo's throwaway value
	vars   *shellVars
}

func (s *supabaseDemo) title() string {
	return "sessionguard local demo: Supabase auth (SESSION_SOURCE=supabase)"
}
func (s *supabaseDemo) env() []string          { return []string{"SESSION_SOURCE=supabase"} }
func (s *supabaseDemo) validatorEnv() []string { return []string{"JWT_SECRET=" + s.secret} }

// schema creates the auth server's schema, then lets migrate publish its
// sessions table.
func (s *supabaseDemo) schema(ctx context.Context, d *demo, validatorBin string) error {
	printf(d.out, "\nCreating the Supabase auth schema, as the auth server's migrations leave it\n")
	db, err := d.db(ctx)
	if err != nil {
		return err
	}
	if err := testenv.CreateSupabaseAuth(ctx, db); err != nil {
		return err
	}
	d.detail("role supabase_auth_admin owns schema auth: auth.users, auth.sessions (row security on), auth.refresh_tokens, auth.mfa_amr_claims")

	printf(d.out, "\nPublishing auth.sessions: SESSION_SOURCE=supabase validator migrate\n")
	if err := d.migrate(ctx, validatorBin); err != nil {
		return err
	}
	var published []string
	err = db.QueryRow(ctx, `SELECT coalesce(array_agg(schemaname || '.' || tablename ORDER BY 1), '{}')
		FROM pg_publication_tables WHERE pubname = 'session_invalidation'`).Scan(&published)
	if err != nil {
		return fmt.Errorf("read the publication: %w", err)
	}
	if len(published) != 1 || published[0] != "auth.sessions" {
		return fmt.Errorf("after validator migrate, publication session_invalidation publishes %v, want [auth.sessions]", published)
	}
	d.detail("publication session_invalidation on auth.sessions is in place; the auth server's tables are left as they are")
	return nil
}

// signIn signs userID in as the auth server does (rows in auth.users and
// auth.sessions) and signs the session's access token.
func (s *supabaseDemo) signIn(ctx context.Context, d *demo, userID string) (token, sessionID string, err error) {
	db, err := d.db(ctx)
	if err != nil {
		return "", "", err
	}
	if sessionID, err = testenv.SupabaseSignIn(ctx, db, userID); err != nil {
		return "", "", err
	}
	token, err = testenv.SupabaseAccessToken([]byte(s.secret), userID, sessionID, tokenTTL, nil)
	if err != nil {
		return "", "", fmt.Errorf("sign the access token: %w", err)
	}
	return token, sessionID, nil
}

// walkthrough is the part a newcomer reads: each step prints what it does
// and what it saw, and fails loudly when the system does not behave.
func (s *supabaseDemo) walkthrough(ctx context.Context, d *demo) error {
	const total = 8
	api := d.api()
	s.vars = &shellVars{path: filepath.Join(d.dir, "walkthrough.env")}
	if err := s.vars.set("V", d.validator.URL); err != nil {
		return err
	}

	if err := d.stepWatermark(ctx, api, 1, total); err != nil {
		return err
	}

	d.step(2, total, "Sign a user in twice, as the auth server does: two sessions, an HS256 access token for each")
	userID := testenv.NewUser()
	token, sid, err := s.signIn(ctx, d, userID)
	if err != nil {
		return errStep(2, err)
	}
	token2, sid2, err := s.signIn(ctx, d, userID)
	if err != nil {
		return errStep(2, err)
	}
	committed := time.Now()
	if _, err := d.waitInserts(ctx, 2); err != nil {
		return errStep(2, err)
	}
	applied := time.Since(committed)
	d.detail("psql> INSERT INTO auth.users (id, aud, role, email, ...) VALUES ('%s', 'authenticated', 'authenticated', ...);", userID)
	d.detail("psql> INSERT INTO auth.sessions (id, user_id, aal, ...) VALUES (gen_random_uuid(), '%s', 'aal1', ...) RETURNING id;  -- twice", userID)
	d.detail("sessions %s and %s", sid, sid2)
	d.detail("access tokens: HS256 with JWT_SECRET, exp in an hour, claims sub=<user> session_id=<session> role=authenticated aal=aal1 aud=authenticated")
	d.detail("TOKEN  = %s  (session %s)", abbrev(token), sid)
	d.detail("TOKEN2 = %s  (session %s)", abbrev(token2), sid2)
	if err := s.vars.set("TOKEN", token, "TOKEN2", token2); err != nil {
		return errStep(2, err)
	}
	d.detail("the invalidator read both INSERTs into auth.sessions from the WAL within %s of the commit", ms(applied))
	d.detail("the curl lines below use $V and these tokens: . %s", s.vars.path)

	d.step(3, total, "Validate TOKEN: from Postgres (cache miss), from Redis (cache hit), then as forward auth for a proxy")
	d.detail("curl -s -X POST $V/v1/sessions/validate -H \"Authorization: Bearer $TOKEN\"")
	if err := d.validateTwice(ctx, api, token); err != nil {
		return errStep(3, err)
	}
	d.detail("curl -s -i $V/v1/auth -H \"Authorization: Bearer $TOKEN\"")
	if err := s.showForwardAuth(ctx, d, api, token, nil, userID, sid); err != nil {
		return errStep(3, err)
	}

	d.step(4, total, "A forged and an expired access token are refused from the token alone, without touching Redis or Postgres")
	if err := s.refuseBadTokens(ctx, d, api, token, userID, sid); err != nil {
		return errStep(4, err)
	}

	d.step(5, total, "Sign TOKEN's session out the way the auth server does, with plain SQL, and poll validate until it is refused")
	d.detail("GoTrue's POST /logout?scope=local runs exactly this (its default scope=global deletes all the user's sessions):")
	d.detail("psql> DELETE FROM auth.sessions WHERE id = '%s';", sid)
	took, polls, err := d.execThenRefused(ctx, api, token, 1, `DELETE FROM auth.sessions WHERE id = $1`, sid)
	if err != nil {
		return errStep(5, err)
	}
	d.detail("committed; validate with $TOKEN answered 401 invalid_token %s after the commit (%d polls)", ms(took), polls)
	d.detail("TOKEN itself is still well signed and unexpired: a check of the JWT alone would accept it for the rest of its hour")
	d.detail("the user's other session is still valid (and now cached too):")
	d.detail("curl -s -X POST $V/v1/sessions/validate -H \"Authorization: Bearer $TOKEN2\"")
	if err := d.validateTwice(ctx, api, token2); err != nil {
		return fmt.Errorf("step 5: the user's other session: %w", err)
	}

	d.step(6, total, "Delete the user with plain SQL: its other session goes by cascade, and TOKEN2 is refused too")
	d.detail("psql> DELETE FROM auth.users WHERE id = '%s';  -- as the auth server's DELETE /admin/users/<id>", userID)
	took, polls, err = d.execThenRefused(ctx, api, token2, 1, `DELETE FROM auth.users WHERE id = $1`, userID)
	if err != nil {
		return errStep(6, err)
	}
	d.detail("committed; validate with $TOKEN2 answered 401 invalid_token %s after the commit (%d polls)", ms(took), polls)
	d.detail("the cascaded delete of session %s reached the WAL as a DELETE on auth.sessions, like any other", sid2)

	d.step(7, total, "A browser's request: a fresh sign-in, its access token in @supabase/ssr's session cookie "+ssrCookieName)
	if err := s.showCookie(ctx, d, api); err != nil {
		return errStep(7, err)
	}

	return d.stepInvalidator(ctx, 8, total)
}

// showForwardAuth asks /v1/auth about a request carrying token (or only
// cookie) and checks the identity it answers with.
func (s *supabaseDemo) showForwardAuth(ctx context.Context, d *demo, api *client, token string, cookie *http.Cookie, userID, sessionID string) error {
	a, took, err := api.forwardAuth(ctx, token, cookie)
	if err != nil {
		return err
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("GET /v1/auth: want 200, got %d", a.status)
	}
	want := map[string]string{"X-User-Id": userID, "X-Session-Id": sessionID, "X-User-Role": "authenticated", "X-User-Aal": "aal1"}
	var shown []string
	for _, h := range identityHeaders {
		got := a.headers.Get(h)
		if got == "" || (want[h] != "" && got != want[h]) {
			return fmt.Errorf("GET /v1/auth: header %s is %q, want %q", h, got, want[h])
		}
		shown = append(shown, h+": "+got)
	}
	d.detail("GET /v1/auth  ->  200  %s", ms(took))
	for _, h := range shown {
		d.detail("    %s", h)
	}
	return nil
}

// refuseBadTokens shows a forged and an expired token refused, and the
// validator's counters proving it looked neither in Redis nor in Postgres.
func (s *supabaseDemo) refuseBadTokens(ctx context.Context, d *demo, api *client, token, userID, sessionID string) error {
	forged, err := forge(token)
	if err != nil {
		return err
	}
	expired, err := testenv.SupabaseAccessToken([]byte(s.secret), userID, sessionID, -time.Minute, nil)
	if err != nil {
		return fmt.Errorf("sign the expired token: %w", err)
	}
	if err := s.vars.set("FORGED", forged, "EXPIRED", expired); err != nil {
		return err
	}
	before, err := api.validations(ctx)
	if err != nil {
		return err
	}
	for _, bad := range []struct{ name, what, token string }{
		{"FORGED", "TOKEN with the first character of its signature changed", forged},
		{"EXPIRED", "signed with the right secret for the same session, but exp a minute ago", expired},
	} {
		d.detail("%s = %s", bad.name, bad.what)
		d.detail("curl -s -X POST $V/v1/sessions/validate -H \"Authorization: Bearer $%s\"", bad.name)
		v, took, err := api.validate(ctx, bad.token)
		if err != nil {
			return err
		}
		if v.status != http.StatusUnauthorized || v.Valid {
			return fmt.Errorf("%s: want 401, got %d valid=%v", bad.name, v.status, v.Valid)
		}
		d.detail("POST /v1/sessions/validate  ->  401 {\"valid\":false,\"error\":%q}  %s", v.Error, ms(took))
	}
	after, err := api.validations(ctx)
	if err != nil {
		return err
	}
	delta := func(src string) float64 { return after.bySource[src] - before.bySource[src] }
	d.detail("GET $V/metrics: sessionguard_validations_total source=\"token\" %+g, source=\"cache\" %+g, source=\"database\" %+g; Redis lookups %+g",
		delta("token"), delta("cache"), delta("database"), after.lookups-before.lookups)
	if delta("token") != 2 || delta("cache") != 0 || delta("database") != 0 || after.lookups != before.lookups {
		return fmt.Errorf("the refusals were not answered from the token alone (counters above)")
	}
	d.detail("the signature and exp are checked first: a token that fails them never costs a Redis or Postgres round trip")
	return nil
}

// showCookie signs a fresh user in and validates the request a browser
// using @supabase/ssr sends: no Authorization header, only the cookie.
func (s *supabaseDemo) showCookie(ctx context.Context, d *demo, api *client) error {
	userID := testenv.NewUser()
	token, sid, err := s.signIn(ctx, d, userID)
	if err != nil {
		return err
	}
	cookie, err := ssrCookie(userID, token, time.Now().Add(tokenTTL))
	if err != nil {
		return err
	}
	if err := s.vars.set("TOKEN3", token, "COOKIE", cookie.Value); err != nil {
		return err
	}
	d.detail("user %s signed in: session %s", userID, sid)
	d.detail("COOKIE = %s", abbrev(cookie.Value))
	d.detail("         base64- then base64url of {\"access_token\":\"<TOKEN3>\",\"token_type\":\"bearer\",\"expires_in\":3600,\"expires_at\":...,\"refresh_token\":...,\"user\":{...}}")
	if _, err := d.waitInserts(ctx, 3); err != nil {
		return err
	}
	d.detail("curl -s -i $V/v1/auth --cookie \"%s=$COOKIE\"", ssrCookieName)
	return s.showForwardAuth(ctx, d, api, "", cookie, userID, sid)
}

// printTryIt prints how to reach everything, with a fresh sign-in to play
// with.
func (s *supabaseDemo) printTryIt(ctx context.Context, d *demo) error {
	userID := testenv.NewUser()
	token, sid, err := s.signIn(ctx, d, userID)
	if err != nil {
		return fmt.Errorf("sign a user in to try: %w", err)
	}
	forged, err := forge(token)
	if err != nil {
		return err
	}
	cookie, err := ssrCookie(userID, token, time.Now().Add(tokenTTL))
	if err != nil {
		return err
	}
	v, i := d.validator.URL, d.invalidator.URL
	printf(d.out, `
Everything is running. Ctrl-C stops it all and removes the temporary files.

  validator    %s    log: %s
  invalidator  %s    log: %s
  postgres     %s
  redis        %s
  JWT secret   %s  (HS256; the demo's throwaway value)
  admin token  %s

A fresh sign-in to try (user %s, session %s):

  export V=%s I=%s
  export ADMIN=%s
  export TOKEN=%s
  export FORGED=%s
  export COOKIE=%s

  curl -s -X POST $V/v1/sessions/validate -H "Authorization: Bearer $TOKEN"
  curl -s -i $V/v1/auth -H "Authorization: Bearer $TOKEN"
  curl -s -i $V/v1/auth --cookie "%s=$COOKIE"
  curl -s -X POST $V/v1/sessions/validate -H "Authorization: Bearer $FORGED"
  curl -s -X DELETE -i $V/v1/sessions/%s -H "Authorization: Bearer $ADMIN"
  curl -s $V/api/health/redis
  curl -s $I/health
  curl -s $V/metrics | grep sessionguard_validations_total

  psql '%s' -c "DELETE FROM auth.sessions WHERE id = '%s'"   # sign out (POST /logout?scope=local)
  psql '%s' -c "DELETE FROM auth.sessions WHERE user_id = '%s'"   # sign out everywhere (POST /logout)
  psql '%s' -c "DELETE FROM auth.users WHERE id = '%s'"   # delete the user
`, v, d.validator.LogPath, i, d.invalidator.LogPath, d.dbURL, d.redis.URL(), s.secret, d.adminToken,
		userID, sid, v, i, d.adminToken, token, forged, cookie.Value, ssrCookieName, sid,
		d.dbURL, sid, d.dbURL, userID, d.dbURL, userID)
	return nil
}

// abbrev shows the start of a long value and its length.
func abbrev(s string) string {
	const n = 24
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

// shellVars is a file of shell variables (export NAME='value') that
// `. file` sets, so the walkthrough's curl lines can be copied as they are.
type shellVars struct {
	path  string
	lines []string
}

// set adds name, value pairs and rewrites the file.
func (v *shellVars) set(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.ContainsRune(pairs[i+1], '\'') {
			return fmt.Errorf("shell variable %s: value holds a quote", pairs[i])
		}
		v.lines = append(v.lines, fmt.Sprintf("export %s='%s'", pairs[i], pairs[i+1]))
	}
	if err := os.WriteFile(v.path, []byte(strings.Join(v.lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", v.path, err)
	}
	return nil
}
