package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// SupabaseSecret is the HS256 JWT secret of a SupabaseWorld.
const SupabaseSecret = "super-secret-jwt-token-with-at-least-32-characters-long"

// SupabasePublication publishes auth.sessions in a SupabaseWorld's database,
// as `validator migrate` would create it.
const SupabasePublication = "sg_supabase"

// SupabaseWorld is a World on the Supabase auth schema: its validation
// service verifies access tokens signed with SupabaseSecret and looks their
// sessions up in auth.sessions, which SupabasePublication publishes.
type SupabaseWorld struct {
	*World
}

// NewSupabaseWorld builds a SupabaseWorld on a fresh database; rule is the
// deployment's timeouts.
func NewSupabaseWorld(t testing.TB, rule session.Rule) *SupabaseWorld {
	t.Helper()
	return &SupabaseWorld{World: supabaseWorld(t, SupabaseDB(t), rule)}
}

// supabaseWorld is a World on database url, which holds the auth schema.
func supabaseWorld(t testing.TB, url string, rule session.Rule) *World {
	t.Helper()
	table, _ := source.TableOf(source.Supabase)
	v, err := jwtauth.New(context.Background(), jwtauth.Options{Secret: []byte(SupabaseSecret)})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, url, table, source.JWT{Verifier: v}, rule)
	w.Exec(t, `CREATE PUBLICATION `+SupabasePublication+` FOR TABLE auth.sessions WITH (publish = 'insert, update, delete, truncate')`)
	return w
}

// NewUser returns a fresh user id (its auth.users row comes with SignIn).
func NewUser() string { return uuid.NewString() }

// SignIn signs userID in as the auth server does and returns the session's
// access token (an hour long) and id.
func (w *SupabaseWorld) SignIn(t testing.TB, userID string) (token, sessionID string) {
	t.Helper()
	sessionID, err := SupabaseSignIn(context.Background(), w.Pool, userID)
	if err != nil {
		t.Fatal(err)
	}
	return w.Token(t, userID, sessionID, nil), sessionID
}

// Token signs an access token for a session, with extra claims (see
// SupabaseAccessToken).
func (w *SupabaseWorld) Token(t testing.TB, userID, sessionID string, extra map[string]any) string {
	t.Helper()
	tok, err := SupabaseAccessToken([]byte(SupabaseSecret), userID, sessionID, time.Hour, extra)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
