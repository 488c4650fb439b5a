package cdc_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// A table described by settings (SESSION_SOURCE=table) keeps the promise as
// the presets do: Better Auth's table mapped by hand (the raw token is not
// in the replica identity, so a DELETE names only the id), and an app's
// own table holding the token's SHA-256 with a boolean revocation flag.
func TestDescribedTable(t *testing.T) {
	t.Parallel()
	t.Run("better auth's table by settings", func(t *testing.T) {
		t.Parallel()
		w := testenv.NewTableWorld(t, source.Mapping{Table: "session", Key: "token", Format: source.FormatRaw,
			User: "userId", Created: "createdAt", Expires: "expiresAt"}, testenv.CreateBetterAuthSchema)
		if !w.Table.ByID {
			t.Fatal("the token is not in the replica identity: entries must be found by id")
		}
		e := newEnvWith(t, w, nil, testenv.TablePublication)
		e.consumer(t, nil)
		ctx := context.Background()
		signIn := func() (token string) {
			_, _, token, err := testenv.BetterAuthSignIn(ctx, w.Pool, testenv.StoreSecret, testenv.NewUser())
			if err != nil {
				t.Fatal(err)
			}
			return token
		}
		a, b := signIn(), signIn()
		e.Warm(t, a)
		e.Warm(t, b)
		if err := testenv.BetterAuthSignOut(ctx, w.Pool, a); err != nil {
			t.Fatal(err)
		}
		e.Refused(t, a, signOutBound)
		e.StaysRefused(t, a)
		if r := e.Validate(t, b); !r.Valid {
			t.Fatal("the other session was refused")
		}

		// The fill racing the DELETE, which names only the id.
		c := signIn()
		e.WatermarkFresh(t, 10*time.Second)
		svc, reg := racingService(w, func() {
			if err := testenv.BetterAuthSignOut(ctx, w.Pool, c); err != nil {
				t.Error(err)
			}
			e.WatermarkFresh(t, 10*time.Second)
		})
		if r, err := svc.Validate(ctx, c); err != nil || !r.Valid {
			t.Fatalf("the read before the sign-out: %+v %v", r, err)
		}
		if n := testenv.Counter(t, reg, "sessionguard_cache_fills_total", "refused"); n != 1 {
			t.Fatalf("%v fills refused, want the racing one", n)
		}
		e.StaysRefused(t, c)
	})
	t.Run("a hashed token and a revoked flag", func(t *testing.T) {
		t.Parallel()
		w := testenv.NewTableWorld(t, source.Mapping{Table: "app_sessions", Key: "token_sha", Format: source.FormatSHA256,
			User: "user_id", Expires: "expires_at", Revoked: "revoked"}, func(ctx context.Context, p *pgxpool.Pool) error {
			_, err := p.Exec(ctx, `CREATE TABLE app_sessions (id bigserial PRIMARY KEY, token_sha bytea NOT NULL UNIQUE,
				user_id text NOT NULL, expires_at timestamptz, revoked boolean NOT NULL DEFAULT false)`)
			return err
		})
		e := newEnvWith(t, w, nil, testenv.TablePublication)
		e.consumer(t, nil)
		token, err := session.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256([]byte(token))
		e.Exec(t, `INSERT INTO app_sessions (token_sha, user_id, expires_at) VALUES ($1, 'u1', now() + interval '1 hour')`, h[:])
		e.Warm(t, token)
		e.Exec(t, `UPDATE app_sessions SET revoked = true WHERE token_sha = $1`, h[:])
		e.Refused(t, token, signOutBound)
		e.StaysRefused(t, token)
	})
}
