package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

func env(kv ...string) Getenv {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

const db = "postgres://u@localhost:5432/app"

func TestValidatorDefaults(t *testing.T) {
	c, err := LoadValidator(nil, env("DATABASE_URL", db))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8080" || !c.CacheEnabled || c.CacheTTL != 5*time.Minute || c.MaxStaleness != 2*time.Second ||
		c.SessionCookie != "session" || c.AdminToken != "" || c.RedisURL != "" || c.LogLevel != zapcore.InfoLevel ||
		c.RedisPoolSize != 10 || c.RedisMinIdle != 2 || c.RedisTimeout != time.Second || c.Publication != "session_invalidation" ||
		c.DBTimeout != 2*time.Second || c.RedisKeyPrefix != "sg" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagOverridesEnv(t *testing.T) {
	c, err := LoadValidator([]string{"-max-staleness", "0", "-listen-addr", "127.0.0.1:9"},
		env("DATABASE_URL", db, "MAX_STALENESS", "5s", "LISTEN_ADDR", ":1", "SESSION_CACHE_ENABLED", "false"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxStaleness != 0 || c.ListenAddr != "127.0.0.1:9" || c.CacheEnabled {
		t.Fatalf("got %+v", c)
	}
}

func TestBadValuesFailLoudly(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  Getenv
		want string
	}{
		{"missing db", nil, env(), "DATABASE_URL is required"},
		{"bad db scheme", nil, env("DATABASE_URL", "mysql://x"), "postgres://"},
		{"bad redis scheme", nil, env("DATABASE_URL", db, "REDIS_URL", "http://x"), "redis://"},
		{"bad ttl", nil, env("DATABASE_URL", db, "SESSION_CACHE_TTL", "5 minutes"), "SESSION_CACHE_TTL"},
		{"bad bool", nil, env("DATABASE_URL", db, "SESSION_CACHE_ENABLED", "yes please"), "SESSION_CACHE_ENABLED"},
		{"bad level", nil, env("DATABASE_URL", db, "LOG_LEVEL", "loud"), "LOG_LEVEL"},
		{"negative staleness", nil, env("DATABASE_URL", db, "MAX_STALENESS", "-1s"), "MAX_STALENESS"},
		{"bad pool", nil, env("DATABASE_URL", db, "REDIS_POOL_SIZE", "0"), "REDIS_POOL_SIZE"},
		{"bad flag value", []string{"-session-cache-ttl", "x"}, env("DATABASE_URL", db), "flag -session-cache-ttl"},
		{"unknown flag", []string{"-nope"}, env("DATABASE_URL", db), "-nope"},
		{"stray argument", []string{"extra"}, env("DATABASE_URL", db), "unexpected argument"},
		{"short admin token", nil, env("DATABASE_URL", db, "ADMIN_TOKEN", "short"), "ADMIN_TOKEN"},
		{"admin token with trailing newline", nil, env("DATABASE_URL", db, "ADMIN_TOKEN", "0123456789abcdef0123\n"), "ADMIN_TOKEN has leading or trailing whitespace"},
		{"admin token with leading blank", nil, env("DATABASE_URL", db, "ADMIN_TOKEN", " 0123456789abcdef0123"), "ADMIN_TOKEN has leading or trailing whitespace"},
		{"db timeout below 1ms", nil, env("DATABASE_URL", db, "DB_TIMEOUT", "0"), "DB_TIMEOUT"},
		{"db timeout not a duration", nil, env("DATABASE_URL", db, "DB_TIMEOUT", "2"), "DB_TIMEOUT"},
		{"db port not a number", nil, env("DATABASE_URL", "postgres://u:s3cret@localhost:54x2/app"), "DATABASE_URL is not a valid"},
		{"db bad sslmode", nil, env("DATABASE_URL", "postgres://u:s3cret@localhost/app?sslmode=sometimes"), "DATABASE_URL is not a valid"},
		{"db bad pool parameter", nil, env("DATABASE_URL", "postgres://u:s3cret@localhost/app?pool_max_conns=many"), "DATABASE_URL is not a valid"},
		{"redis bad db number", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@localhost:6379/zero"), "REDIS_URL is not a valid"},
		{"redis bad port", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@localhost:63x9/0"), "REDIS_URL is not a valid"},
		{"redis bad query", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@localhost:6379/0?dial_timeout=soon"), "REDIS_URL is not a valid"},
		{"sentinel bad option", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://s1:26379/0?master_name=m&password=s3cret&pool=1"), "REDIS_URL is not a valid"},
		{"sentinel bad addr", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://s1:26379/0?master_name=m&password=s3cret&addr=s2"), "REDIS_URL is not a valid"},
		{"cluster bad value", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@n1:6379?cluster=yes"), "cluster= takes true"},
		{"cluster and sentinel", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@n1:6379?cluster=true&master_name=m"), "not both"},
		{"cluster read from replicas", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@n1:6379?cluster=true&read_only=true"), "read_only= sends reads to replicas"},
		{"cluster bad option", nil, env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@n1:6379?cluster=true&pool=1"), "REDIS_URL is not a valid"},
		{"listen addr without port", nil, env("DATABASE_URL", db, "LISTEN_ADDR", "localhost"), "LISTEN_ADDR"},
		{"listen addr named port", nil, env("DATABASE_URL", db, "LISTEN_ADDR", ":http"), "LISTEN_ADDR"},
		{"listen addr port too big", nil, env("DATABASE_URL", db, "LISTEN_ADDR", ":65536"), "LISTEN_ADDR"},
		{"listen addr negative port", nil, env("DATABASE_URL", db, "LISTEN_ADDR", ":-1"), "LISTEN_ADDR"},
		{"listen addr signed port", nil, env("DATABASE_URL", db, "LISTEN_ADDR", ":+80"), "LISTEN_ADDR"},
		{"listen addr empty", []string{"-listen-addr="}, env("DATABASE_URL", db), "LISTEN_ADDR"},
		{"key prefix empty flag", []string{"-redis-key-prefix="}, env("DATABASE_URL", db), "flag -redis-key-prefix"},
		{"key prefix with colon", nil, env("DATABASE_URL", db, "REDIS_KEY_PREFIX", "sg:prod"), "REDIS_KEY_PREFIX"},
		{"key prefix with glob", nil, env("DATABASE_URL", db, "REDIS_KEY_PREFIX", "sg*"), "REDIS_KEY_PREFIX"},
		{"key prefix with space", nil, env("DATABASE_URL", db, "REDIS_KEY_PREFIX", "sg prod"), "REDIS_KEY_PREFIX"},
		{"key prefix too long", nil, env("DATABASE_URL", db, "REDIS_KEY_PREFIX", strings.Repeat("a", 65)), "1-64 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadValidator(tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "0123456789abcdef") {
				t.Fatalf("error carries a secret: %q", err)
			}
		})
	}
}

func TestGoodValuesPass(t *testing.T) {
	cases := []struct {
		name string
		env  Getenv
	}{
		{"db with password and params", env("DATABASE_URL", "postgresql://u:p%40ss@db.internal:6432/app?sslmode=disable&pool_max_conns=5")},
		{"redis with password and db", env("DATABASE_URL", db, "REDIS_URL", "rediss://:pw@cache:6380/3")},
		{"redis cluster", env("DATABASE_URL", db, "REDIS_URL", "redis://sg-validator:pw@n1:6379?cluster=true&addr=n2:6379&addr=n3:6379")},
		{"redis sentinel", env("DATABASE_URL", db, "REDIS_URL", "redis://s1:26379/0?master_name=mymaster&addr=s2:26379&addr=s3:26379&username=sg-validator&password=pw")},
		{"listen on all interfaces", env("DATABASE_URL", db, "LISTEN_ADDR", ":0")},
		{"listen on ipv6 loopback", env("DATABASE_URL", db, "LISTEN_ADDR", "[::1]:65535")},
		{"listen on a host name", env("DATABASE_URL", db, "LISTEN_ADDR", "localhost:8080")},
		{"db timeout 1ms", env("DATABASE_URL", db, "DB_TIMEOUT", "1ms")},
		{"min idle 0", env("DATABASE_URL", db, "REDIS_MIN_IDLE", "0")},
		{"key prefix of every allowed character", env("DATABASE_URL", db, "REDIS_KEY_PREFIX", "Prod_eu-1.sg")},
		{"key prefix of 64 characters", env("DATABASE_URL", db, "REDIS_KEY_PREFIX", strings.Repeat("a", 64))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadValidator(nil, tc.env); err != nil {
				t.Fatal(err)
			}
		})
	}
	c, err := LoadValidator(nil, env("DATABASE_URL", db, "REDIS_MIN_IDLE", "0", "DB_TIMEOUT", "250ms"))
	if err != nil || c.RedisMinIdle != 0 || c.DBTimeout != 250*time.Millisecond {
		t.Fatalf("got %+v, %v", c, err)
	}
}

func TestInvalidator(t *testing.T) {
	if _, err := LoadInvalidator(nil, env("DATABASE_URL", db)); err == nil || !strings.Contains(err.Error(), "REDIS_URL is required") {
		t.Fatalf("err %v, want REDIS_URL required", err)
	}
	c, err := LoadInvalidator(nil, env("DATABASE_URL", db, "REDIS_URL", "rediss://cache:6380/0"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8081" || c.ReplicationSlot != "session_invalidator" || c.HeartbeatInterval != time.Second ||
		c.RedisKeyPrefix != "sg" {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = LoadInvalidator([]string{"-redis-key-prefix", "staging"}, env("DATABASE_URL", db, "REDIS_URL", "redis://x", "REDIS_KEY_PREFIX", "prod"))
	if err != nil || c.RedisKeyPrefix != "staging" {
		t.Fatalf("prefix from flag: %q, %v", c.RedisKeyPrefix, err)
	}
	if _, err := LoadInvalidator(nil, env("DATABASE_URL", db, "REDIS_URL", "redis://x", "REDIS_KEY_PREFIX", "a/b")); err == nil ||
		!strings.Contains(err.Error(), "REDIS_KEY_PREFIX") {
		t.Fatalf("invalidator, bad prefix: err %v", err)
	}
	if _, err := LoadInvalidator(nil, env("DATABASE_URL", db, "REDIS_URL", "redis://x", "REPLICATION_SLOT", "Bad-Name")); err == nil {
		t.Fatal("bad slot name accepted")
	}
	for name, e := range map[string]Getenv{
		"DATABASE_URL": env("DATABASE_URL", "postgres://u:s3cret@localhost:54x2/app", "REDIS_URL", "redis://x"),
		"REDIS_URL":    env("DATABASE_URL", db, "REDIS_URL", "redis://:s3cret@x/zero"),
		"LISTEN_ADDR":  env("DATABASE_URL", db, "REDIS_URL", "redis://x", "LISTEN_ADDR", "8081"),
	} {
		_, err := LoadInvalidator(nil, e)
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("invalidator, bad %s: err %v", name, err)
		}
	}
}

func TestHelp(t *testing.T) {
	_, err := LoadValidator([]string{"-h"}, env())
	var h ErrHelp
	if !errors.As(err, &h) || !strings.Contains(h.Usage, "SESSION_CACHE_TTL") {
		t.Fatalf("err %v, want ErrHelp listing the settings", err)
	}
}

func TestMigrateFlags(t *testing.T) {
	c, err := LoadMigrate(nil, env("DATABASE_URL", db, "REVOKE_PUBLIC_EMIT_MESSAGE", "true"))
	if err != nil || c.RevokePublicEmitMessage || c.DatabaseURL != db {
		t.Fatalf("default: revoke=%v %v (must be off, and never read from the environment)", c.RevokePublicEmitMessage, err)
	}
	c, err = LoadMigrate([]string{"-revoke-public-emit-message", "-publication", "p"}, env("DATABASE_URL", db))
	if err != nil || !c.RevokePublicEmitMessage || c.Publication != "p" {
		t.Fatalf("with the flag: %+v %v", c, err)
	}
	if _, err := LoadValidator([]string{"-revoke-public-emit-message"}, env("DATABASE_URL", db)); err == nil {
		t.Fatal("serve accepted a migrate-only flag")
	}
	_, err = LoadMigrate([]string{"-h"}, env())
	var h ErrHelp
	if !errors.As(err, &h) || !strings.Contains(h.Usage, "-revoke-public-emit-message") || !strings.Contains(h.Usage, "DATABASE_URL") {
		t.Fatalf("help: %v", err)
	}
}

const jwtSecret = "0123456789abcdef0123456789abcdef"

func TestSupabaseSource(t *testing.T) {
	c, err := LoadValidator(nil, env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret,
		"SESSION_TIMEBOX", "24h", "SESSION_INACTIVITY_TIMEOUT", "8h", "SUPABASE_COOKIE", "sb-abc-auth-token"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "supabase" || c.JWT.Secret != jwtSecret || c.JWT.Audience != "authenticated" || c.JWT.Leeway != 0 ||
		len(c.JWT.SessionlessRoles) != 0 || c.Timebox != 24*time.Hour || c.Inactivity != 8*time.Hour || c.SupabaseCookieName != "sb-abc-auth-token" {
		t.Fatalf("got %+v", c)
	}
	c, err = LoadValidator(nil, env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret, "JWT_SESSIONLESS_ROLES", "service_role, admin"))
	if err != nil || len(c.JWT.SessionlessRoles) != 2 || c.JWT.SessionlessRoles[1] != "admin" {
		t.Fatalf("roles: %v %v", c.JWT.SessionlessRoles, err)
	}
	// migrate verifies no token, so needs no key.
	if _, err := LoadMigrate(nil, env("DATABASE_URL", db, "SESSION_SOURCE", "supabase")); err != nil {
		t.Fatalf("migrate without a key: %v", err)
	}
	inv, err := LoadInvalidator(nil, env("DATABASE_URL", db, "REDIS_URL", "redis://x:6379/0", "SESSION_SOURCE", "supabase"))
	if err != nil || inv.Source != "supabase" {
		t.Fatalf("invalidator: %+v %v", inv, err)
	}
	for _, tc := range []struct {
		name string
		env  Getenv
		want string
	}{
		{"unknown source", env("DATABASE_URL", db, "SESSION_SOURCE", "firebase"), "SESSION_SOURCE"},
		{"no key", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase"), "needs JWT_SECRET"},
		{"short secret", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", "short"), "at least 32"},
		{"secret with a newline", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret+"\n"), "whitespace"},
		{"bad jwks url", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWKS_URL", "ftp://x/jwks"), "JWKS_URL"},
		{"jwks url without host", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWKS_URL", "https:///jwks"), "JWKS_URL"},
		{"empty audience", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret, "JWT_AUDIENCE", " "), "JWT_AUDIENCE"},
		{"bad cookie name", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret, "SUPABASE_COOKIE", "session"), "SUPABASE_COOKIE"},
		{"supabase setting on the default source", env("DATABASE_URL", db, "JWT_SECRET", jwtSecret), "JWT_SECRET is set but SESSION_SOURCE is sessionguard"},
		{"timebox on the default source", env("DATABASE_URL", db, "SESSION_TIMEBOX", "1h"), "SESSION_TIMEBOX"},
		{"audience on the default source", env("DATABASE_URL", db, "JWT_AUDIENCE", "x"), "JWT_AUDIENCE is set"},
		{"anon without a session", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret, "JWT_SESSIONLESS_ROLES", "service_role,anon"), "public anon key"},
		{"authenticated without a session", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret, "JWT_SESSIONLESS_ROLES", "authenticated"), "unrevocable"},
		{"bad role list", env("DATABASE_URL", db, "SESSION_SOURCE", "supabase", "JWT_SECRET", jwtSecret, "JWT_SESSIONLESS_ROLES", "a,,b"), "JWT_SESSIONLESS_ROLES"},
	} {
		_, err := LoadValidator(nil, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), jwtSecret) {
			t.Errorf("%s: the error quotes the secret: %v", tc.name, err)
		}
	}
}

func TestTableSource(t *testing.T) {
	base := []string{"DATABASE_URL", db, "SESSION_SOURCE", "table", "SESSION_TABLE", `public."Session"`, "SESSION_TABLE_KEY", "token"}
	c, err := LoadValidator(nil, env(base...))
	if err != nil || c.Table.Table != `public."Session"` || c.Table.Key != "token" || c.Table.Format != "sha256" || c.SessionCookie != "session" {
		t.Fatalf("%+v %v", c.Table, err)
	}
	inv, err := LoadInvalidator(nil, env(append(base, "REDIS_URL", "redis://x:6379/0", "SESSION_TABLE_ACTIVE", "active")...))
	if err != nil || inv.Table.Active != "active" {
		t.Fatalf("invalidator: %+v %v", inv.Table, err)
	}
	c, err = LoadValidator(nil, env(append(base, "SESSION_TABLE_KEY_FORMAT", "signed", "SESSION_COOKIE_SECRET", "s3cret", "SESSION_INACTIVITY_TIMEOUT", "30m")...))
	if err != nil || c.Inactivity != 30*time.Minute {
		t.Fatalf("signed: %+v %v", c, err)
	}
	for _, tc := range []struct {
		env  Getenv
		want string
	}{
		{env("DATABASE_URL", db, "SESSION_SOURCE", "table", "SESSION_TABLE_KEY", "token"), "SESSION_TABLE"},
		{env("DATABASE_URL", db, "SESSION_SOURCE", "table", "SESSION_TABLE", "Session", "SESSION_TABLE_KEY", "token"), "quote it"},
		{env("DATABASE_URL", db, "SESSION_SOURCE", "table", "SESSION_TABLE", "session"), "SESSION_TABLE_KEY is required"},
		{env(append(base, "SESSION_TABLE_KEY_FORMAT", "md5")...), "SESSION_TABLE_KEY_FORMAT"},
		{env(append(base, "SESSION_TABLE_REVOKED", "r", "SESSION_TABLE_ACTIVE", "a")...), "not both"},
		{env(append(base, "SESSION_TABLE_KEY_FORMAT", "signed")...), "needs SESSION_COOKIE_SECRET"},
		{env(append(base, "SESSION_COOKIE_SECRET", "x")...), "SESSION_COOKIE_SECRET is set"},
		{env("DATABASE_URL", db, "SESSION_TABLE", "session"), "SESSION_TABLE settings are set but SESSION_SOURCE is sessionguard"},
		{env("DATABASE_URL", db, "SESSION_SOURCE", "django", "SESSION_TIMEBOX", "1h"), "SESSION_TIMEBOX"},
		{env("DATABASE_URL", db, "SESSION_SOURCE", "django", "SESSION_TIMESTAMP_ZONE", "Europe/Berlin"), "SESSION_TIMESTAMP_ZONE is set"},
		{env(append(base, "SESSION_TIMESTAMP_ZONE", "Mars/Olympus")...), "SESSION_TIMESTAMP_ZONE"},
	} {
		_, err := LoadValidator(nil, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v, want one line with %q", err, tc.want)
		}
	}
	for _, name := range []string{"better-auth", "connect-pg-simple"} {
		if _, err := LoadValidator(nil, env("DATABASE_URL", db, "SESSION_SOURCE", name)); err == nil || !strings.Contains(err.Error(), "SESSION_COOKIE_SECRET") {
			t.Errorf("%s without a secret: %v", name, err)
		}
	}
	if c, err := LoadValidator(nil, env("DATABASE_URL", db, "SESSION_SOURCE", "connect-pg-simple", "SESSION_COOKIE_SECRET", "s3cret",
		"SESSION_TIMESTAMP_ZONE", "Europe/Berlin")); err != nil || c.SessionCookie != "connect.sid" || c.TimestampZone != "Europe/Berlin" {
		t.Fatalf("connect-pg-simple's cookie: %q %v", c.SessionCookie, err)
	}
}
