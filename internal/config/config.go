// Package config reads the processes' configuration from environment
// variables, each of which a command-line flag of the same meaning may
// override (DATABASE_URL <-> -database-url). A value that does not parse is
// an error, never a silent default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // SESSION_TIMESTAMP_ZONE names resolve without the host's zoneinfo

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/source"
)

// Common holds the settings both processes share.
type Common struct {
	DatabaseURL string
	RedisURL    string
	ListenAddr  string
	LogLevel    zapcore.Level
	Publication string
	// RedisKeyPrefix starts every Redis key of the deployment; two
	// deployments sharing a Redis must use different prefixes.
	RedisKeyPrefix string
	// Source names the sessions table followed (source.Names, or
	// source.Generic with Table describing it).
	Source string
	Table  source.Mapping
	// TimestampZone is the IANA zone of timestamps without time zone of
	// connect-pg-simple and table sources ("": UTC).
	TimestampZone string
}

// Validator is the validator's configuration.
type Validator struct {
	Common
	CacheEnabled    bool
	NearCacheSize   int
	CacheTTL        time.Duration
	NegativeTTL     time.Duration
	MaxStaleness    time.Duration
	AdminToken      string
	SessionCookie   string
	RedisPoolSize   int
	RedisMinIdle    int
	RedisTimeout    time.Duration
	DBMaxConns      int
	DBTimeout       time.Duration
	ShutdownTimeout time.Duration
	JWT             JWT
	// Timebox and Inactivity are the auth server's session timeouts,
	// applied by the validator (no event marks them).
	Timebox, Inactivity time.Duration
	// SupabaseCookieName names the SSR session cookie; empty reads the one
	// sb-<ref>-auth-token cookie a request carries.
	SupabaseCookieName string
	// CookieSecret is the app's secret its session tokens are signed with
	// (better-auth, connect-pg-simple).
	CookieSecret string
}

// JWT configures the verification of access tokens (SESSION_SOURCE=supabase).
type JWT struct {
	Secret   string // HS256 secret; empty: none
	JWKSURL  string // RS256/ES256 keys; empty: none
	Audience string
	Leeway   time.Duration
	// SessionlessRoles: a verified token without session_id is valid on
	// its own when its role is one of these (Supabase's service_role key).
	SessionlessRoles []string
}

// Migrate is the configuration of `validator migrate`: the validator's
// settings (it reads DATABASE_URL and PUBLICATION) and the migrate-only flags.
type Migrate struct {
	Validator
	// RevokePublicEmitMessage revokes EXECUTE on pg_logical_emit_message
	// from PUBLIC (flag only: it changes privileges beyond our own table).
	RevokePublicEmitMessage bool
}

// Inspect is the configuration of `validator inspect`: the validator's
// settings and the inspect-only flags.
type Inspect struct {
	Validator
	Sample int  // entries to compare
	All    bool // every entry instead of Sample
	JSON   bool // one JSON document instead of text
}

// Invalidator is the invalidator's configuration.
type Invalidator struct {
	Common
	ReplicationSlot   string
	HeartbeatInterval time.Duration
	LagThreshold      time.Duration
	StandbyPoll       time.Duration
	ShutdownTimeout   time.Duration
	// The sampled check: InspectSample entries every InspectInterval (either
	// 0: off), a disagreement counted once it outlasts InspectGrace (the
	// validators' MAX_STALENESS).
	InspectInterval, InspectGrace time.Duration
	InspectSample                 int
}

// Getenv looks a variable up (os.Getenv in production, a map in tests).
type Getenv func(string) string

// setting is one variable: its env name, flag name, default and parser.
type setting struct {
	env, def, help string
	set            func(string) error
}

type loader struct {
	fs       *flag.FlagSet
	getenv   Getenv
	settings []*setting
	flagVals map[string]*string
	flagOnly []string // usage lines of the flags that have no variable
}

func newLoader(name string, getenv Getenv) *loader {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &loader{fs: fs, getenv: getenv, flagVals: map[string]*string{}}
}

func flagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

func (l *loader) add(env, def, help string, set func(string) error) {
	s := &setting{env: env, def: def, help: help, set: set}
	l.settings = append(l.settings, s)
	l.flagVals[env] = l.fs.String(flagName(env), "", help+" (env "+env+", default "+quoteDef(def)+")")
}

// flagBool is a boolean flag with no environment variable: for one-off
// actions that must be asked for on the command line each time.
func (l *loader) flagBool(p *bool, name, help string) {
	l.fs.BoolVar(p, name, false, help)
	l.flagOnly = append(l.flagOnly, fmt.Sprintf("  -%s\n      %s (flag only, default off)\n", name, help))
}

// flagInt is an integer flag with no environment variable, at least min.
func (l *loader) flagInt(p *int, name string, def, min int, help string) {
	l.fs.Func(name, fmt.Sprintf("%s (flag only, default %d)", help, def), func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			return fmt.Errorf("want an integer of at least %d", min)
		}
		*p = n
		return nil
	})
	*p = def
	l.flagOnly = append(l.flagOnly, fmt.Sprintf("  -%s n\n      %s (flag only, default %d)\n", name, help, def))
}

func quoteDef(d string) string {
	if d == "" {
		return "empty"
	}
	return d
}

func (l *loader) str(p *string, env, def, help string) {
	l.add(env, def, help, func(v string) error { *p = v; return nil })
}

func (l *loader) dur(p *time.Duration, env, def, help string, min time.Duration) {
	l.add(env, def, help, func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration (examples: 500ms, 2s, 5m)")
		}
		if d < min {
			return fmt.Errorf("must be at least %v", min)
		}
		*p = d
		return nil
	})
}

func (l *loader) boolean(p *bool, env, def, help string) {
	l.add(env, def, help, func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not a boolean (true or false)")
		}
		*p = b
		return nil
	})
}

func (l *loader) integer(p *int, env, def, help string, min, max int) {
	l.add(env, def, help, func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		if n < min || n > max {
			return fmt.Errorf("must be between %d and %d", min, max)
		}
		*p = n
		return nil
	})
}

func (l *loader) common(c *Common, listenDef string) {
	l.str(&c.DatabaseURL, "DATABASE_URL", "", "Postgres URL of the primary (required)")
	l.str(&c.RedisURL, "REDIS_URL", "", "redis:// or rediss:// URL")
	l.str(&c.ListenAddr, "LISTEN_ADDR", listenDef, "HTTP listen address")
	l.add("LOG_LEVEL", "info", "debug, info, warn or error", func(v string) error {
		lv, err := zapcore.ParseLevel(v)
		if err != nil || lv > zapcore.ErrorLevel {
			return fmt.Errorf("must be debug, info, warn or error")
		}
		c.LogLevel = lv
		return nil
	})
	l.str(&c.Publication, "PUBLICATION", "session_invalidation", "publication on the sessions table")
	names := append(source.Names(), source.Generic)
	l.add("SESSION_SOURCE", source.Sessionguard, "the sessions table followed: "+strings.Join(names, ", ")+" (table: described by SESSION_TABLE_*)", func(v string) error {
		if !slices.Contains(names, v) {
			return fmt.Errorf("must be one of %s", strings.Join(names, ", "))
		}
		c.Source = v
		return nil
	})
	l.add("SESSION_TIMESTAMP_ZONE", "", "connect-pg-simple, table: the IANA time zone the app's database session writes timestamps without time zone in (empty: UTC)", func(v string) error {
		if _, err := time.LoadLocation(v); err != nil || strings.EqualFold(v, "local") {
			return errors.New("not an IANA time zone name (examples: UTC, Europe/Berlin, America/New_York)")
		}
		c.TimestampZone = v
		return nil
	})
	m := &c.Table
	for _, s := range []struct {
		p        *string
		env, def string
		help     string
	}{
		{&m.Table, "SESSION_TABLE", "", "table: the sessions table, [schema.]name as to_regclass reads it (quote mixed case: \"Session\")"},
		{&m.Key, "SESSION_TABLE_KEY", "", "table: the column the presented token maps to"},
		{&m.Format, "SESSION_TABLE_KEY_FORMAT", source.FormatSHA256, "table: how the token maps to the key column: sha256 (its SHA-256, bytea or hex), raw (the token itself) or signed (express-session's s:<value>.<signature> cookie)"},
		{&m.ID, "SESSION_TABLE_ID", "", "table: the column identifying a row (default: the primary key)"},
		{&m.User, "SESSION_TABLE_USER", "", "table: the user column (optional)"},
		{&m.Created, "SESSION_TABLE_CREATED", "", "table: the creation time column (optional)"},
		{&m.Expires, "SESSION_TABLE_EXPIRES", "", "table: the expiry column (optional; NULL: none)"},
		{&m.Revoked, "SESSION_TABLE_REVOKED", "", "table: a nullable revocation time, or a boolean true when revoked (optional)"},
		{&m.Active, "SESSION_TABLE_ACTIVE", "", "table: a boolean false when revoked (optional)"},
		{&m.LastActive, "SESSION_TABLE_LAST_ACTIVE", "", "table: the last activity column, for SESSION_INACTIVITY_TIMEOUT (optional)"},
	} {
		l.str(s.p, s.env, s.def, s.help)
	}
	l.add("REDIS_KEY_PREFIX", "sg", "prefix of every Redis key of this deployment; one deployment per prefix", func(v string) error {
		if !validKeyPrefix(v) {
			return errors.New("must be 1-64 characters of letters, digits, '_', '.' and '-' (two deployments sharing a Redis need different prefixes)")
		}
		c.RedisKeyPrefix = v
		return nil
	})
}

// validKeyPrefix accepts 1-64 characters of [A-Za-z0-9_.-]: no ':' (the key
// separator), no glob characters (the prefix goes into SCAN patterns), no
// whitespace.
func validKeyPrefix(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// load parses flags, then applies flag > env > default for every setting.
func (l *loader) load(args []string) error {
	if err := l.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrHelp{Usage: l.usage()}
		}
		return fmt.Errorf("%v (run with -h for the list of settings)", err)
	}
	if l.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (run with -h for the list of settings)", l.fs.Arg(0))
	}
	set := map[string]bool{}
	l.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, s := range l.settings {
		v, src := s.def, "default"
		if e := l.getenv(s.env); e != "" {
			v, src = e, "environment variable "+s.env
		}
		if set[flagName(s.env)] {
			v, src = *l.flagVals[s.env], "flag -"+flagName(s.env)
		}
		if err := s.set(v); err != nil {
			return fmt.Errorf("%s: %q: %v", src, v, err)
		}
	}
	return nil
}

func (l *loader) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage of %s (each flag overrides its environment variable):\n", l.fs.Name())
	for _, s := range l.settings {
		fmt.Fprintf(&b, "  -%s / %s\n      %s (default %s)\n", flagName(s.env), s.env, s.help, quoteDef(s.def))
	}
	for _, f := range l.flagOnly {
		b.WriteString(f)
	}
	return b.String()
}

// ErrHelp is returned when -h was given; Usage is the text to print.
type ErrHelp struct{ Usage string }

func (e ErrHelp) Error() string { return "help requested" }

// checkCommon checks what the loaders cannot: that the URLs and the listen
// address will be accepted by the clients and the listener that use them.
// No message quotes a URL: it may carry a password (and so may the parsers'
// own errors, which are therefore not passed on).
func checkCommon(c *Common, redisRequired bool) error {
	if c.Publication == "" {
		return errors.New("PUBLICATION must not be empty")
	}
	if c.TimestampZone != "" && c.Source != source.ConnectPgSimple && c.Source != source.Generic {
		return fmt.Errorf("SESSION_TIMESTAMP_ZONE is set but SESSION_SOURCE is %s: it applies to connect-pg-simple and table only (the others write UTC)", c.Source)
	}
	if c.Source == source.Generic {
		if _, err := source.FromMapping(c.Table); err != nil {
			return err
		}
	} else if c.Table != (source.Mapping{Format: source.FormatSHA256}) {
		return fmt.Errorf("SESSION_TABLE settings are set but SESSION_SOURCE is %s: they describe SESSION_SOURCE=table only", c.Source)
	}
	if c.DatabaseURL == "" {
		return errors.New("DATABASE_URL is required (example: postgres://user:pass@localhost:5432/app)")
	}
	const badDB = "DATABASE_URL is not a valid Postgres connection URL (check the host, port, database and query parameters such as sslmode and pool_max_conns)"
	u, err := url.Parse(c.DatabaseURL)
	if err != nil {
		return errors.New(badDB)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return errors.New("DATABASE_URL must be a postgres:// or postgresql:// URL")
	}
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		return errors.New(badDB)
	}
	if err := checkListenAddr(c.ListenAddr); err != nil {
		return err
	}
	if c.RedisURL == "" {
		if redisRequired {
			return errors.New("REDIS_URL is required (example: redis://localhost:6379/0)")
		}
		return nil
	}
	const badRedis = "REDIS_URL is not a valid Redis URL (check the host, port, database number and query parameters; examples: redis://localhost:6379/0, for Sentinel redis://sentinel1:26379/0?master_name=mymaster&addr=sentinel2:26379&password=..., for a cluster redis://node1:6379?cluster=true&addr=node2:6379)"
	if u, err = url.Parse(c.RedisURL); err != nil {
		return errors.New(badRedis)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("REDIS_URL must be a redis:// or rediss:// URL")
	}
	if err := cache.CheckURL(c.RedisURL); err != nil {
		return fmt.Errorf("%s: %v", badRedis, err)
	}
	return nil
}

// checkListenAddr accepts host:port with a numeric port (0-65535); the host
// may be empty (all interfaces).
func checkListenAddr(addr string) error {
	const msg = "LISTEN_ADDR must be host:port or :port with a numeric port 0-65535 (examples: :8080, 127.0.0.1:8080, [::1]:8080)"
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(msg)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return errors.New(msg)
	}
	return nil
}

// LoadValidator reads the validator's configuration.
func LoadValidator(args []string, getenv Getenv) (Validator, error) {
	var c Validator
	err := loadValidator(newLoader("validator", getenv), &c, args, true)
	return c, err
}

// LoadMigrate reads the configuration of `validator migrate`.
func LoadMigrate(args []string, getenv Getenv) (Migrate, error) {
	var c Migrate
	l := newLoader("validator migrate", getenv)
	l.flagBool(&c.RevokePublicEmitMessage, "revoke-public-emit-message",
		"revoke EXECUTE on pg_logical_emit_message from PUBLIC and grant it to the migrating role, so no other login can forge invalidator heartbeats (needs a superuser)")
	err := loadValidator(l, &c.Validator, args, false)
	return c, err
}

// LoadInspect reads the configuration of `validator inspect`, which needs
// REDIS_URL.
func LoadInspect(args []string, getenv Getenv) (Inspect, error) {
	var c Inspect
	l := newLoader("validator inspect", getenv)
	l.flagInt(&c.Sample, "sample", 1000, 1, "how many cache entries to compare with Postgres")
	l.flagBool(&c.All, "all", "compare every cache entry instead of a sample")
	l.flagBool(&c.JSON, "json", "print one JSON document instead of text")
	if err := loadValidator(l, &c.Validator, args, false); err != nil {
		return c, err
	}
	sampleSet := false
	l.fs.Visit(func(f *flag.Flag) { sampleSet = sampleSet || f.Name == "sample" })
	if c.All && sampleSet {
		return c, errors.New("-sample and -all exclude each other")
	}
	if c.RedisURL == "" {
		return c, errors.New("REDIS_URL is required: validator inspect reads the cache (example: redis://localhost:6379/0)")
	}
	return c, nil
}

// loadValidator reads the validator's settings; serving is false for
// `validator migrate`, which verifies no token.
func loadValidator(l *loader, c *Validator, args []string, serving bool) error {
	l.common(&c.Common, ":8080")
	l.boolean(&c.CacheEnabled, "SESSION_CACHE_ENABLED", "true", "serve validations from Redis; false sends every validation to Postgres")
	l.dur(&c.CacheTTL, "SESSION_CACHE_TTL", "5m", "longest life of a cache entry (never beyond the session's expires_at)", time.Second)
	l.dur(&c.NegativeTTL, "SESSION_NEGATIVE_TTL", "10s", "how long an unknown, revoked or expired token is remembered as invalid", time.Millisecond)
	l.dur(&c.MaxStaleness, "MAX_STALENESS", "2s", "serve from the cache only while the invalidator watermark is at most this old; 0 turns the guard off", 0)
	l.integer(&c.NearCacheSize, "NEAR_CACHE_SIZE", "50000", "entries of the in-process near cache, served without Redis while the invalidator's notices keep it in step (needs MAX_STALENESS above 0); 0 turns it off", 0, 10000000)
	l.str(&c.AdminToken, "ADMIN_TOKEN", "", "bearer token for the admin endpoints; empty disables them")
	l.str(&c.SessionCookie, "SESSION_COOKIE", "", "cookie read by /v1/auth when the request carries no Bearer token; empty: the source's own (session; better-auth.session_token, connect.sid, sessionid)")
	l.integer(&c.RedisPoolSize, "REDIS_POOL_SIZE", "10", "Redis connection pool size", 1, 10000)
	l.integer(&c.RedisMinIdle, "REDIS_MIN_IDLE", "2", "Redis idle connections kept open (0 keeps none)", 0, 10000)
	l.dur(&c.RedisTimeout, "REDIS_TIMEOUT", "1s", "timeout of one Redis call (dial, read, write)", time.Millisecond)
	l.integer(&c.DBMaxConns, "DB_MAX_CONNS", "10", "Postgres connection pool size", 1, 10000)
	l.dur(&c.DBTimeout, "DB_TIMEOUT", "2s", "timeout of one Postgres query of a validation or an admin request (a hung Postgres answers 503 after it)", time.Millisecond)
	l.dur(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "15s", "how long in-flight requests may take to finish on SIGTERM", 0)
	l.str(&c.JWT.Secret, "JWT_SECRET", "", "supabase: the project's JWT secret, verifying HS256 access tokens")
	l.str(&c.JWT.JWKSURL, "JWKS_URL", "", "supabase: https://, http:// or file:// URL of the signing keys verifying RS256 and ES256 access tokens (<project>/auth/v1/.well-known/jwks.json)")
	l.str(&c.JWT.Audience, "JWT_AUDIENCE", jwtauth.DefaultAudience, "supabase: the audience an access token must carry")
	l.dur(&c.JWT.Leeway, "JWT_LEEWAY", "0s", "supabase: clock skew allowed on an access token's exp and nbf", 0)
	l.add("JWT_SESSIONLESS_ROLES", "", "supabase: comma-separated roles whose verified tokens need no session_id (service_role: the service key); empty refuses every token without a session", func(v string) error {
		c.JWT.SessionlessRoles = nil
		for _, r := range strings.Split(v, ",") {
			r = strings.TrimSpace(r)
			switch {
			case r == "" && v == "":
			case r == "" || strings.ContainsAny(r, " \t"):
				return errors.New("must be role names separated by commas (example: service_role)")
			case r == "anon":
				return errors.New("anon is the role of the public anon key, which every client holds: allowing it would let anyone through")
			case r == "authenticated":
				return errors.New("authenticated is the role of every user's token: allowing it without a session would let a token that names none through, unrevocable")
			default:
				c.JWT.SessionlessRoles = append(c.JWT.SessionlessRoles, r)
			}
		}
		return nil
	})
	l.dur(&c.Timebox, "SESSION_TIMEBOX", "0s", "supabase, table: end every session this long after it was created (as the Supabase auth server's timebox does); 0: never", 0)
	l.dur(&c.Inactivity, "SESSION_INACTIVITY_TIMEOUT", "0s", "supabase, table: end a session this long after its last refresh or activity, or its creation if none (as the Supabase auth server's inactivity timeout does); 0: never", 0)
	l.str(&c.CookieSecret, "SESSION_COOKIE_SECRET", "", "better-auth, connect-pg-simple: the app's secret its session tokens are signed with (BETTER_AUTH_SECRET; express-session's secret)")
	l.str(&c.SupabaseCookieName, "SUPABASE_COOKIE", "", "supabase: name of the SSR session cookie read by /v1/auth (sb-<project-ref>-auth-token); empty reads the one such cookie a request carries")
	if err := l.load(args); err != nil {
		return err
	}
	if err := checkCommon(&c.Common, false); err != nil {
		return err
	}
	if err := checkSource(c, serving); err != nil {
		return err
	}
	if c.SessionCookie == "" {
		c.SessionCookie = "session"
		if t, err := source.TableOf(c.Source); err == nil {
			c.SessionCookie = t.Cookie
		}
	}
	if strings.TrimSpace(c.AdminToken) != c.AdminToken {
		return errors.New("ADMIN_TOKEN has leading or trailing whitespace (a newline at the end of a secret file?); remove it, or every admin call would answer 401")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return errors.New("ADMIN_TOKEN must be at least 16 characters (or empty to disable the admin endpoints)")
	}
	return nil
}

// checkSource checks the settings that depend on SESSION_SOURCE. A secret's
// value is never quoted.
func checkSource(c *Validator, serving bool) error {
	j := c.JWT
	named, _ := source.TableOf(c.Source)
	signed := source.NeedsSecret(named) || (c.Source == source.Generic && c.Table.Format == source.FormatSigned)
	switch {
	case c.CookieSecret != "" && !signed:
		return fmt.Errorf("SESSION_COOKIE_SECRET is set but SESSION_SOURCE is %s: it applies to %s, %s and table with SESSION_TABLE_KEY_FORMAT=signed only", c.Source, source.BetterAuth, source.ConnectPgSimple)
	case strings.TrimSpace(c.CookieSecret) != c.CookieSecret:
		return errors.New("SESSION_COOKIE_SECRET has leading or trailing whitespace (a newline at the end of a secret file?); remove it, or no signature would verify")
	case serving && c.CookieSecret == "" && signed:
		return fmt.Errorf("SESSION_SOURCE=%s needs SESSION_COOKIE_SECRET, the app's secret its session tokens are signed with", c.Source)
	}
	if c.Source != source.Supabase {
		for _, s := range []struct {
			name string
			set  bool
		}{{"JWT_SECRET", j.Secret != ""}, {"JWKS_URL", j.JWKSURL != ""}, {"JWT_AUDIENCE", j.Audience != jwtauth.DefaultAudience},
			{"JWT_LEEWAY", j.Leeway != 0}, {"JWT_SESSIONLESS_ROLES", len(j.SessionlessRoles) > 0},
			{"SUPABASE_COOKIE", c.SupabaseCookieName != ""}} {
			if s.set {
				return fmt.Errorf("%s is set but SESSION_SOURCE is %s: it applies to SESSION_SOURCE=supabase only", s.name, c.Source)
			}
		}
		if c.Source != source.Generic && (c.Timebox != 0 || c.Inactivity != 0) {
			return fmt.Errorf("SESSION_TIMEBOX and SESSION_INACTIVITY_TIMEOUT apply to SESSION_SOURCE=supabase and table only, not %s", c.Source)
		}
		return nil
	}
	if strings.TrimSpace(j.Secret) != j.Secret {
		return errors.New("JWT_SECRET has leading or trailing whitespace (a newline at the end of a secret file?); remove it, or no token would verify")
	}
	if j.Secret != "" && len(j.Secret) < 32 {
		return errors.New("JWT_SECRET must be at least 32 characters, as Supabase requires of a project's JWT secret")
	}
	if j.JWKSURL != "" {
		u, err := url.Parse(j.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") || (u.Scheme == "file" && u.Path == "") {
			return errors.New("JWKS_URL must be an https://, http:// or file:/// URL (example: https://<project>.supabase.co/auth/v1/.well-known/jwks.json)")
		}
	}
	if serving && j.Secret == "" && j.JWKSURL == "" {
		return errors.New("SESSION_SOURCE=supabase needs JWT_SECRET (HS256, the project's JWT secret) or JWKS_URL (RS256/ES256 signing keys), or both, to verify access tokens")
	}
	if strings.TrimSpace(j.Audience) == "" || strings.TrimSpace(j.Audience) != j.Audience {
		return errors.New("JWT_AUDIENCE must not be empty or padded with blanks (Supabase's user tokens carry \"authenticated\")")
	}
	if c.SupabaseCookieName != "" && (!strings.HasPrefix(c.SupabaseCookieName, "sb-") || !strings.HasSuffix(c.SupabaseCookieName, "-auth-token")) {
		return errors.New("SUPABASE_COOKIE must look like sb-<project-ref>-auth-token (the name without a .0/.1 chunk suffix)")
	}
	return nil
}

// LoadInvalidator reads the invalidator's configuration.
func LoadInvalidator(args []string, getenv Getenv) (Invalidator, error) {
	var c Invalidator
	l := newLoader("invalidator", getenv)
	l.common(&c.Common, ":8081")
	l.str(&c.ReplicationSlot, "REPLICATION_SLOT", "session_invalidator", "permanent logical replication slot (created if missing)")
	l.dur(&c.HeartbeatInterval, "HEARTBEAT_INTERVAL", "1s", "how often a watermark heartbeat goes through the replication stream", 10*time.Millisecond)
	l.dur(&c.LagThreshold, "LAG_THRESHOLD", "10s", "readyz fails while the replication lag is above this", time.Millisecond)
	l.dur(&c.StandbyPoll, "STANDBY_POLL", "1s", "how often a standby tries to become the active consumer", 10*time.Millisecond)
	l.dur(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "15s", "how long in-flight work may take to finish on SIGTERM", 0)
	l.dur(&c.InspectInterval, "INSPECT_INTERVAL", "10s", "how often the active invalidator compares a sample of cache entries with Postgres; 0 turns the check off", 0)
	l.integer(&c.InspectSample, "INSPECT_SAMPLE", "20", "cache entries per sampled check; 0 turns the check off", 0, 10000)
	l.dur(&c.InspectGrace, "INSPECT_GRACE", "2s", "how long a cache entry may disagree with Postgres before the sampled check counts it: the validators' MAX_STALENESS", 0)
	if err := l.load(args); err != nil {
		return c, err
	}
	if err := checkCommon(&c.Common, true); err != nil {
		return c, err
	}
	if c.ReplicationSlot == "" || !validSlotName(c.ReplicationSlot) {
		return c, errors.New("REPLICATION_SLOT must be 1-63 characters of lower-case letters, digits and underscores")
	}
	return c, nil
}

func validSlotName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
