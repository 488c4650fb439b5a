package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// Source is one sessions table as a test drives it from outside, through
// the SQL its writers run. A guarantee test written against a Source runs
// once per entry of Sources, so every source keeps every guarantee.
type Source struct {
	Name        string // SESSION_SOURCE, and the name of the subtest
	Table       string // the table as publication DDL names it
	Publication string // the publication a World of this source streams from

	// SQL on the session whose id is $1.
	Revoke string // ends it as the source's writers do
	Expire string // an UPDATE after which it is no longer valid
	Delete string
	Extend string // an UPDATE that keeps it valid; returns its new expiry
	// Truncate empties the table.
	Truncate string

	newWorld   func(t testing.TB, url string) *World
	newSession func(t testing.TB, w *World) (token, id string)
	unborn     func(t testing.TB, w *World) (token string, insert func(testing.TB))
	rekey      func(t testing.TB, w *World, id string) (token string, update func(testing.TB))
}

// Sources lists a Source per sessions table, sessionguard's own first.
func Sources() []*Source { return []*Source{ownSource, supabaseSource} }

// ByIDSources lists Sources whose DELETE names only the row's id (its key
// is another column: source.Table.ByID), for the guarantees that path must
// keep apart: an op by id waits for visibility like any revocation.
func ByIDSources() []*Source { return []*Source{betterAuthSource} }

// SourceOf returns the Source of a World's table.
func SourceOf(t testing.TB, table source.Table) *Source {
	t.Helper()
	for _, s := range append(Sources(), ByIDSources()...) {
		// The name alone is not enough: Kratos's table is "sessions" too.
		if tb, err := source.TableOf(s.Name); err == nil && tb.Name == table.Name && tb.Key == table.Key {
			return s
		}
	}
	t.Fatalf("no test source follows table %s", table.Name)
	return nil
}

// NewWorld builds a World of the source on database url (a fresh one of the
// package's shared server when empty), with the source's publication.
func (s *Source) NewWorld(t testing.TB, url string) *World {
	t.Helper()
	return s.newWorld(t, url)
}

// NewSession inserts a session valid for an hour as the source's writers
// do and returns a token of it and its id.
func (s *Source) NewSession(t testing.TB, w *World) (token, id string) {
	t.Helper()
	return s.newSession(t, w)
}

// Unborn returns a token of a session that no row holds yet, and the INSERT
// that then creates it.
func (s *Source) Unborn(t testing.TB, w *World) (token string, insert func(testing.TB)) {
	t.Helper()
	return s.unborn(t, w)
}

// Rekey returns the token that session id answers to once update has moved
// the row to another key (the old token then names no row).
func (s *Source) Rekey(t testing.TB, w *World, id string) (token string, update func(testing.TB)) {
	t.Helper()
	return s.rekey(t, w, id)
}

// Env is what an invalidator process needs in its environment to follow
// the source.
func (s *Source) Env() []string {
	return []string{"SESSION_SOURCE=" + s.Name, "PUBLICATION=" + s.Publication}
}

var ownSource = &Source{
	Name: source.Sessionguard, Table: "sessions", Publication: DefaultPublication,
	Revoke:   `UPDATE sessions SET revoked_at = now() WHERE id = $1`,
	Expire:   `UPDATE sessions SET expires_at = now() WHERE id = $1`,
	Delete:   `DELETE FROM sessions WHERE id = $1`,
	Extend:   `UPDATE sessions SET expires_at = now() + interval '2 hours' WHERE id = $1 RETURNING expires_at`,
	Truncate: `TRUNCATE sessions`,
	newWorld: NewWorld,
	newSession: func(t testing.TB, w *World) (string, string) {
		t.Helper()
		return InsertSession(t, w.Pool, "", time.Hour)
	},
	unborn: func(t testing.TB, w *World) (string, func(testing.TB)) {
		t.Helper()
		token := newToken(t)
		return token, func(t testing.TB) {
			t.Helper()
			w.Exec(t, `INSERT INTO sessions (user_id, token_hash, expires_at)
				VALUES (gen_random_uuid(), sha256(convert_to($1, 'UTF8')), now() + interval '1 hour')`, token)
		}
	},
	rekey: func(t testing.TB, w *World, id string) (string, func(testing.TB)) {
		t.Helper()
		token := newToken(t)
		return token, func(t testing.TB) {
			t.Helper()
			w.Exec(t, `UPDATE sessions SET token_hash = sha256(convert_to($1, 'UTF8')) WHERE id = $2`, token, id)
		}
	},
}

// supabaseSource ends a session as the auth server's sign-out does: by
// deleting its row.
var supabaseSource = &Source{
	Name: source.Supabase, Table: "auth.sessions", Publication: SupabasePublication,
	Revoke:   `DELETE FROM auth.sessions WHERE id = $1`,
	Expire:   `UPDATE auth.sessions SET not_after = now() - interval '1 second' WHERE id = $1`,
	Delete:   `DELETE FROM auth.sessions WHERE id = $1`,
	Extend:   `UPDATE auth.sessions SET not_after = now() + interval '2 hours' WHERE id = $1 RETURNING not_after`,
	Truncate: `TRUNCATE auth.sessions CASCADE`, // refresh tokens and MFA claims refer to it
	newWorld: func(t testing.TB, url string) *World {
		t.Helper()
		if url == "" {
			return NewSupabaseWorld(t, session.Rule{}).World
		}
		return newSupabaseWorldOn(t, url)
	},
	newSession: func(t testing.TB, w *World) (string, string) {
		t.Helper()
		user := NewUser()
		id, err := SupabaseSignIn(context.Background(), w.Pool, user)
		if err != nil {
			t.Fatal(err)
		}
		return supabaseToken(t, user, id), id
	},
	unborn: func(t testing.TB, w *World) (string, func(testing.TB)) {
		t.Helper()
		user, id := NewUser(), uuid.NewString()
		return supabaseToken(t, user, id), func(t testing.TB) {
			t.Helper()
			w.Exec(t, `INSERT INTO auth.users (id, aud, role, created_at, updated_at)
				VALUES ($1, 'authenticated', 'authenticated', now(), now())`, user)
			w.Exec(t, `INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal)
				VALUES ($1, $2, now(), now(), 'aal1')`, id, user)
		}
	},
	rekey: func(t testing.TB, w *World, id string) (string, func(testing.TB)) {
		t.Helper()
		var user string
		if err := w.Pool.QueryRow(context.Background(), `SELECT user_id::text FROM auth.sessions WHERE id = $1`, id).Scan(&user); err != nil {
			t.Fatalf("read the session's user: %v", err)
		}
		next := uuid.NewString()
		return supabaseToken(t, user, next), func(t testing.TB) {
			t.Helper()
			w.Exec(t, `UPDATE auth.sessions SET id = $1 WHERE id = $2`, next, id)
		}
	},
}

// newSupabaseWorldOn is NewSupabaseWorld on database url, which may belong
// to a server of the test's own (one it stops or reconfigures).
func newSupabaseWorldOn(t testing.TB, url string) *World {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := CreateSupabaseAuth(ctx, Pool(t, url)); err != nil {
		t.Fatal(err)
	}
	return supabaseWorld(t, url, session.Rule{})
}

func supabaseToken(t testing.TB, user, id string) string {
	t.Helper()
	tok, err := SupabaseAccessToken([]byte(SupabaseSecret), user, id, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newToken(t testing.TB) string {
	t.Helper()
	token, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// betterAuthSource signs out as Better Auth does: a DELETE of the row, which
// reaches the stream carrying only its id.
var betterAuthSource = &Source{
	Name: source.BetterAuth, Table: `"session"`, Publication: StorePublication(source.BetterAuth),
	Revoke:   `DELETE FROM "session" WHERE id = $1`,
	Expire:   `UPDATE "session" SET "expiresAt" = now() - interval '1 second' WHERE id = $1`,
	Delete:   `DELETE FROM "session" WHERE id = $1`,
	Extend:   `UPDATE "session" SET "expiresAt" = now() + interval '2 hours' WHERE id = $1 RETURNING "expiresAt"`,
	Truncate: `TRUNCATE "session"`,
	newWorld: func(t testing.TB, url string) *World {
		t.Helper()
		if url == "" {
			return NewStoreWorld(t, source.BetterAuth)
		}
		return newStoreWorldOn(t, source.BetterAuth, "", url)
	},
	newSession: func(t testing.TB, w *World) (string, string) {
		t.Helper()
		presented, id, _, err := BetterAuthSignIn(context.Background(), w.Pool, StoreSecret, NewUser())
		if err != nil {
			t.Fatal(err)
		}
		return presented, id
	},
	unborn: func(t testing.TB, w *World) (string, func(testing.TB)) {
		t.Helper()
		token := betterAuthID()
		return BetterAuthSign(StoreSecret, token), func(t testing.TB) {
			t.Helper()
			user := NewUser()
			w.Exec(t, `INSERT INTO "user" ("id", "name", "email", "emailVerified", "createdAt", "updatedAt")
				VALUES ($1, $1, $1 || '@example.com', false, now(), now())`, user)
			w.Exec(t, `INSERT INTO "session" ("id", "expiresAt", "token", "createdAt", "updatedAt", "userId")
				VALUES ($1, now() + interval '1 hour', $2, now(), now(), $3)`, betterAuthID(), token, user)
		}
	},
	rekey: func(t testing.TB, w *World, id string) (string, func(testing.TB)) {
		t.Helper()
		token := betterAuthID()
		return BetterAuthSign(StoreSecret, token), func(t testing.TB) {
			t.Helper()
			w.Exec(t, `UPDATE "session" SET token = $1 WHERE id = $2`, token, id)
		}
	},
}
