package validation_test

import (
	"context"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// BenchmarkValidate measures the validate path against real Postgres and
// Redis on loopback. Compare the sub-benchmarks with one another, not with
// absolute numbers: redis_hgetall_baseline is a bare go-redis HGETALL of a
// five-field hash on the same server in the same run, the floor for any
// Redis-backed lookup; postgres_baseline is the bare indexed SELECT.
func BenchmarkValidate(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	token, _ := e.newSession(b, 24*time.Hour)

	b.Run("redis_hgetall_baseline", func(b *testing.B) {
		key := "bench:hash"
		e.RDB.HSet(ctx, key, "id", "6f1c8b1e-2a55-4b55-9f0c-5d5b0b3f4a11", "user_id", "0b7c1f2e-1111-4a2b-8c3d-222233334444",
			"created_at", "1764150000000000", "expires_at", "1764236400000000", "revoked_at", "")
		for b.Loop() {
			if err := e.RDB.HGetAll(ctx, key).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postgres_baseline", func(b *testing.B) {
		k := session.Key{Hash: session.HashToken(token)}
		for b.Loop() {
			if _, err := e.Store.Lookup(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit", func(b *testing.B) {
		s := validation.New(e.Store, validation.Options{Cache: e.Cache, CacheEnabled: true})
		if _, err := s.Validate(ctx, token); err != nil { // fill
			b.Fatal(err)
		}
		for b.Loop() {
			r, err := s.Validate(ctx, token)
			if err != nil || !r.Valid || r.Source != validation.SourceCache {
				b.Fatalf("%+v %v", r, err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		// Every iteration: the entry is dropped first (outside the timer),
		// then lookup + Postgres + lease-checked fill.
		s := validation.New(e.Store, validation.Options{Cache: e.Cache, CacheEnabled: true})
		h := session.HashToken(token)
		for b.Loop() {
			b.StopTimer()
			if err := e.Cache.Invalidate(ctx, h); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			r, err := s.Validate(ctx, token)
			if err != nil || !r.Valid || r.Source != validation.SourceDatabase {
				b.Fatalf("%+v %v", r, err)
			}
		}
	})
	b.Run("database_only", func(b *testing.B) {
		s := validation.New(e.Store, validation.Options{CacheEnabled: false})
		for b.Loop() {
			r, err := s.Validate(ctx, token)
			if err != nil || !r.Valid || r.Source != validation.SourceDatabase {
				b.Fatalf("%+v %v", r, err)
			}
		}
	})
	b.Run("hit_parallel", func(b *testing.B) {
		s := validation.New(e.Store, validation.Options{Cache: e.Cache, CacheEnabled: true})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, err := s.Validate(ctx, token); err != nil || !r.Valid {
					b.Errorf("%+v %v", r, err)
					return
				}
			}
		})
	})
	b.Run("database_only_parallel", func(b *testing.B) {
		s := validation.New(e.Store, validation.Options{CacheEnabled: false})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, err := s.Validate(ctx, token); err != nil || !r.Valid {
					b.Errorf("%+v %v", r, err)
					return
				}
			}
		})
	})
}

// BenchmarkSupabaseValidate is what verifying the JWT adds to a cache hit:
// a Supabase access token (HS256) against an opaque token of our own table,
// both served from the cache in the same run, and a badly signed JWT,
// refused without any Redis or Postgres call.
func BenchmarkSupabaseValidate(b *testing.B) {
	ctx := context.Background()
	own := newEnv(b)
	opaque, _ := own.newSession(b, 24*time.Hour)
	sb := testenv.NewSupabaseWorld(b, session.Rule{})
	jwtTok, _ := sb.SignIn(b, testenv.NewUser())
	bad := jwtTok[:len(jwtTok)-2] + "AA"
	for _, c := range []struct {
		name  string
		svc   *validation.Service
		token string
		cache *cache.Cache
		id    string
		valid bool
	}{
		{"opaque_hit_baseline", own.service(validation.Options{CacheEnabled: true, MaxStaleness: time.Minute}), opaque, own.Cache, own.identity, true},
		{"jwt_hs256_hit", validation.New(sb.Store, validation.Options{Credentials: sb.Creds, Cache: sb.Cache, CacheEnabled: true,
			MaxStaleness: time.Minute, Identity: sb.Identity}), jwtTok, sb.Cache, sb.Identity.Current(), true},
		{"jwt_bad_signature", validation.New(sb.Store, validation.Options{Credentials: sb.Creds, Cache: sb.Cache, CacheEnabled: true}), bad, sb.Cache, "", false},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.id != "" {
				setWatermark(b, c.cache, 0, c.id)
			}
			if _, err := c.svc.Validate(ctx, c.token); err != nil { // fill
				b.Fatal(err)
			}
			for b.Loop() {
				r, err := c.svc.Validate(ctx, c.token)
				if err != nil || r.Valid != c.valid || (c.valid && r.Source != validation.SourceCache) {
					b.Fatalf("%+v %v", r, err)
				}
			}
		})
	}
}
