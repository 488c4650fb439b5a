package cdc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// BenchmarkSignOutToRefused is BenchmarkCommitToRefusedHTTP for Supabase
// and Better Auth (whose DELETE names only the row's id): per sign-out (the
// DELETE of the session's row), the time
// from the commit to the first 401 from forward auth (GET /v1/auth) for the
// same access token, polled back to back over a keep-alive connection on
// loopback, with the session cached before. The commit of our own table's
// revocation is measured in the same run as the baseline:
//
//	SG_BENCH=1 go test -run '^$' -bench SignOutToRefused -benchtime 500x ./internal/cdc/
func BenchmarkSignOutToRefused(b *testing.B) {
	benchGate(b)
	for _, src := range []string{source.Supabase, source.BetterAuth, source.Sessionguard} {
		b.Run(src, func(b *testing.B) {
			var (
				e       *env
				signIn  func() (token, id string)
				signOut string
			)
			maxTok := source.MaxJWTLen
			switch src {
			case source.Supabase:
				sb := testenv.NewSupabaseWorld(b, session.Rule{})
				e = newEnvOn(b, sb.World, testenv.SupabasePublication)
				signIn = func() (string, string) { return sb.SignIn(b, testenv.NewUser()) }
				signOut = `DELETE FROM auth.sessions WHERE id = $1`
			case source.BetterAuth:
				// A DELETE that names only the id: through the id index.
				e = newEnvWith(b, testenv.NewStoreWorld(b, src), nil, testenv.StorePublication(src))
				signIn = func() (string, string) {
					presented, id, _, err := testenv.BetterAuthSignIn(context.Background(), e.Pool, testenv.StoreSecret, testenv.NewUser())
					if err != nil {
						b.Fatal(err)
					}
					return presented, id
				}
				signOut = `DELETE FROM "session" WHERE id = $1`
				maxTok = session.MaxTokenLen
			default:
				e = newEnv(b, "")
				signIn = func() (string, string) { return e.NewSession(b) }
				signOut = `UPDATE sessions SET revoked_at = now() WHERE id = $1`
				maxTok = session.MaxTokenLen
			}
			e.consumer(b, nil)
			srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.Service, DB: e.Store, MaxTokenLen: maxTok, Logger: zap.NewNop()}))
			defer srv.Close()
			refusedOverHTTP(b, srv, http.MethodGet, "/v1/auth", signIn, func(id string) { e.Exec(b, signOut, id) },
				e.Warm, src+": commit-to-401 through forward auth")
		})
	}
}
