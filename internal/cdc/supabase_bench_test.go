package cdc_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// BenchmarkSignOutToRefused is BenchmarkCommitToRefusedHTTP for Supabase:
// per sign-out (the auth server's DELETE of the auth.sessions row), the time
// from the commit to the first 401 from forward auth (GET /v1/auth) for the
// same access token, polled back to back over a keep-alive connection on
// loopback, with the session cached before. The commit of our own table's
// revocation is measured in the same run as the baseline:
//
//	SG_BENCH=1 go test -run '^$' -bench SignOutToRefused -benchtime 500x ./internal/cdc/
func BenchmarkSignOutToRefused(b *testing.B) {
	benchGate(b)
	for _, src := range []string{source.Supabase, source.Sessionguard} {
		b.Run(src, func(b *testing.B) {
			var (
				e       *env
				signIn  func() (token, id string)
				signOut string
			)
			maxTok := source.MaxJWTLen
			if src == source.Supabase {
				sb := testenv.NewSupabaseWorld(b, session.Rule{})
				e = newEnvOn(b, sb.World, testenv.SupabasePublication)
				signIn = func() (string, string) { return sb.SignIn(b, testenv.NewUser()) }
				signOut = `DELETE FROM auth.sessions WHERE id = $1`
			} else {
				e = newEnv(b, "")
				signIn = func() (string, string) { return e.NewSession(b) }
				signOut = `UPDATE sessions SET revoked_at = now() WHERE id = $1`
				maxTok = session.MaxTokenLen
			}
			e.consumer(b, nil)
			srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.Service, DB: e.Store, MaxTokenLen: maxTok, Logger: zap.NewNop()}))
			defer srv.Close()
			client := srv.Client()
			status := func(token string) int {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/auth", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				token, id := signIn()
				e.Warm(b, token)
				if code := status(token); code != http.StatusOK {
					b.Fatalf("warm token answered %d", code)
				}
				b.StartTimer()
				e.Exec(b, signOut, id)
				t0 := time.Now()
				for {
					code := status(token)
					if code == http.StatusUnauthorized {
						break
					}
					if code != http.StatusOK || time.Since(t0) > 5*time.Second {
						b.Fatalf("answered %d %v after the sign-out", code, time.Since(t0))
					}
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportLatency(b, lat, src+": commit-to-401 through forward auth")
		})
	}
}
