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
		c.RedisPoolSize != 10 || c.RedisMinIdle != 2 || c.RedisTimeout != time.Second || c.Publication != "session_invalidation" {
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
		})
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
	if c.ListenAddr != ":8081" || c.ReplicationSlot != "session_invalidator" || c.HeartbeatInterval != time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if _, err := LoadInvalidator(nil, env("DATABASE_URL", db, "REDIS_URL", "redis://x", "REPLICATION_SLOT", "Bad-Name")); err == nil {
		t.Fatal("bad slot name accepted")
	}
}

func TestHelp(t *testing.T) {
	_, err := LoadValidator([]string{"-h"}, env())
	var h ErrHelp
	if !errors.As(err, &h) || !strings.Contains(h.Usage, "SESSION_CACHE_TTL") {
		t.Fatalf("err %v, want ErrHelp listing the settings", err)
	}
}
