package testenv

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// StoreSecret is the app secret of a store World: what signs Better Auth's
// and express-session's cookies (SESSION_COOKIE_SECRET) and Django's
// session data.
const StoreSecret = "store-world-secret-with-at-least-32-characters"

// StoreNames lists the framework stores NewStoreWorld builds, sorted.
func StoreNames() []string {
	return []string{source.BetterAuth, source.ConnectPgSimple, source.Django, source.Kratos, source.Lucia}
}

// StorePublication is the publication a store World streams from.
func StorePublication(name string) string { return "sg_" + strings.ReplaceAll(name, "-", "_") }

// NewStoreWorld builds a World of framework store name (SESSION_SOURCE) on
// a fresh database of the shared server: the store's tables as its project
// creates them, StorePublication as `validator migrate` creates it, and a
// validation service reading the store's credentials with StoreSecret.
// Its writers run in UTC, as sessionguard reads a timestamp without time
// zone by default; the shared server would otherwise give them the zone
// initdb found on the machine.
func NewStoreWorld(t testing.TB, name string) *World {
	t.Helper()
	return NewStoreWorldInZone(t, name, "")
}

// NewStoreWorldInZone is NewStoreWorld with the database's time zone, in
// which its writers write a timestamp without time zone (connect-pg-simple's
// expire, through to_timestamp), set to zone ("": UTC), and the World's
// table read so (SESSION_TIMESTAMP_ZONE).
func NewStoreWorldInZone(t testing.TB, name, zone string) *World {
	t.Helper()
	var dbURL string
	if name == source.Kratos {
		dbURL = KratosDB(t) // no sessionguard migrations: its sessions table is Kratos's
	} else {
		dbURL = DB(t)
	}
	return newStoreWorldOn(t, name, zone, dbURL)
}

// newStoreWorldOn is NewStoreWorldInZone on database dbURL, which may be
// of a server of the test's own.
func newStoreWorldOn(t testing.TB, name, zone, dbURL string) *World {
	t.Helper()
	table, err := source.TableOf(name)
	if err != nil {
		t.Fatal(err)
	}
	table.Zone = zone
	creds, err := source.CredentialsOf(table, []byte(StoreSecret))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if zone == "" {
		zone = "UTC"
	}
	setZone(ctx, t, dbURL, zone)
	if name != source.Kratos {
		create := map[string]func(context.Context, *pgxpool.Pool) error{
			source.BetterAuth: CreateBetterAuthSchema, source.ConnectPgSimple: CreateConnectPGSimpleSchema,
			source.Django: CreateDjangoSchema, source.Lucia: CreateLuciaSchema,
		}[name]
		if create == nil {
			t.Fatalf("no store %q (want one of %v)", name, StoreNames())
		}
		if err := create(ctx, Pool(t, dbURL)); err != nil {
			t.Fatal(err)
		}
	}
	w := newWorld(t, dbURL, table, creds, session.Rule{})
	if _, err := pg.MigrateForeign(ctx, w.Pool, StorePublication(name), table); err != nil {
		t.Fatalf("migrate for %s: %v", name, err)
	}
	return w
}

// setZone makes zone the time zone of new sessions of the database at
// dbURL.
func setZone(ctx context.Context, t testing.TB, dbURL, zone string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+` SET timezone TO `+pg.QuoteLiteral(zone)); err != nil {
		t.Fatalf("set the database's time zone: %v", err)
	}
}

// StoreSession is a session a store's writes made, as a test holds it.
type StoreSession struct {
	Presented string // what the client sends: the bearer token, or the session cookie's value
	Token     string // what the row holds: the raw token, sid or session key (Lucia: the token its id hashes)
	ID        string // the row's primary key
	User      string // the user StoreSignIn was given
	// ExpiresAt as the row holds it; a timestamp without time zone is read
	// in the World's zone (source.Table.Location).
	ExpiresAt time.Time
}

// StoreUser returns a new user of store name: an id Better Auth's or
// Kratos's sign-in creates with its session, a passport or Django user id,
// or Lucia's app_user row.
func StoreUser(t testing.TB, w *World, name string) string {
	t.Helper()
	switch name {
	case source.Kratos:
		return uuid.NewString()
	case source.Lucia:
		id, err := LuciaCreateUser(context.Background(), w.Pool, "user_"+randomString(12, alnum))
		if err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(id)
	case source.Django:
		return randomString(6, "123456789")
	}
	return "user_" + randomString(12, alnum)
}

// StoreSignIn signs user in to store name as the store does and returns the
// session. A zero expires takes the store's own lifetime (the package's
// sign-in functions); otherwise the session ends then, written as the store
// writes its expiry.
func StoreSignIn(t testing.TB, w *World, name, user string, expires time.Time) StoreSession {
	t.Helper()
	ctx := context.Background()
	s, err := storeSignIn(ctx, w.Pool, name, user, expires)
	if err != nil {
		t.Fatalf("sign in to %s: %v", name, err)
	}
	s.User = user
	table := w.Table
	q := `SELECT ` + pgx.Identifier{table.ExpiresAt.Name}.Sanitize()
	if table.ExpiresAt.Type == "timestamp without time zone" {
		q += ` AT TIME ZONE ` + pg.QuoteLiteral(table.Location().String())
	}
	q += ` FROM ` + pgx.Identifier{table.Relation()}.Sanitize() + ` WHERE ` + pgx.Identifier{table.ID.Name}.Sanitize() + `::text = $1`
	if err := w.Pool.QueryRow(ctx, q, s.ID).Scan(&s.ExpiresAt); err != nil {
		t.Fatalf("read the %s session's expiry: %v", name, err)
	}
	return s
}

func storeSignIn(ctx context.Context, pool *pgxpool.Pool, name, user string, expires time.Time) (StoreSession, error) {
	var (
		s   StoreSession
		err error
	)
	switch name {
	case source.BetterAuth:
		if expires.IsZero() {
			s.Presented, s.ID, s.Token, err = BetterAuthSignIn(ctx, pool, StoreSecret, user)
			return s, err
		}
		now := time.Now().Truncate(time.Millisecond)
		_, err = pool.Exec(ctx, `insert into "user" ("id", "name", "email", "emailVerified", "createdAt", "updatedAt")
			values ($1, $1, $1 || '@example.com', false, $2, $2) on conflict ("id") do nothing`, user, now)
		if err != nil {
			return s, err
		}
		s.ID, s.Token = betterAuthID(), betterAuthID()
		_, err = pool.Exec(ctx, `insert into "session" ("id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId")
			values ($1, $2, $3, $4, $4, '127.0.0.1', 'curl/8', $5)`, s.ID, expires.Truncate(time.Millisecond), s.Token, now, user)
		s.Presented = BetterAuthSign(StoreSecret, s.Token)
	case source.Kratos:
		if s.Token, s.ID, err = KratosSignIn(ctx, pool, user); err != nil || expires.IsZero() {
			s.Presented = s.Token // X-Session-Token, or a bearer
			return s, err
		}
		// A second session of the identity the first created, as Kratos
		// writes them, ending at expires.
		id, token := uuid.NewString(), "ory_st_"+randomString(32, alnum)
		_, err = pool.Exec(ctx, `INSERT INTO sessions (aal, active, authenticated_at, authentication_methods, created_at, expires_at, id, identity_id, issued_at, logout_token, nid, token, updated_at)
			SELECT aal, active, authenticated_at, authentication_methods, created_at, $2, $3, identity_id, issued_at, $4, nid, $5, updated_at
			  FROM sessions WHERE id = $1`, s.ID, expires.UTC().Truncate(time.Microsecond), id, "ory_lo_"+randomString(32, alnum), token)
		s.ID, s.Token, s.Presented = id, token, token
	case source.ConnectPgSimple:
		if expires.IsZero() {
			expires = time.Now().Add(ConnectPGSimpleTTL)
		}
		s.Token = ConnectPGSimpleSID()
		s.ID = s.Token
		err = ConnectPGSimpleSet(ctx, pool, s.Token, ConnectPGSimpleSess(user), expires)
		s.Presented = strings.TrimPrefix(ConnectPGSimpleCookie(StoreSecret, s.Token), "connect.sid=")
	case source.Django:
		s.Token = DjangoNewSessionKey()
		s.ID, s.Presented = s.Token, s.Token
		data := []byte(`{"_auth_user_id":"` + user + `","_auth_user_backend":"django.contrib.auth.backends.ModelBackend"}`)
		if expires.IsZero() {
			err = DjangoCreate(ctx, pool, StoreSecret, s.Token, data)
			break
		}
		_, err = pool.Exec(ctx, `INSERT INTO "django_session" ("session_key", "session_data", "expire_date") VALUES ($1, $2, $3)`,
			s.Token, DjangoSessionData(StoreSecret, data, time.Now()), expires.Truncate(time.Microsecond))
	case source.Lucia:
		userID, cerr := strconv.Atoi(user)
		if cerr != nil {
			return s, fmt.Errorf("lucia user %q is not an app_user id", user)
		}
		s.Token = LuciaToken()
		s.Presented = s.Token
		if expires.IsZero() {
			s.ID, err = LuciaCreateSession(ctx, pool, s.Token, userID)
			break
		}
		s.ID = LuciaSessionID(s.Token)
		_, err = pool.Exec(ctx, `INSERT INTO user_session (id, user_id, expires_at) VALUES ($1, $2, $3)`,
			s.ID, userID, expires.Truncate(time.Millisecond))
	default:
		return s, fmt.Errorf("no store %q (want one of %v)", name, StoreNames())
	}
	return s, err
}

// TablePublication is the publication a NewTableWorld streams from.
const TablePublication = "sg_table"

// NewTableWorld builds a World of a table described by settings
// (SESSION_SOURCE=table) on a fresh database: create makes the table, the
// mapping is resolved against the catalog as the processes do at start, and
// TablePublication is created as `validator migrate` does.
func NewTableWorld(t testing.TB, m source.Mapping, create func(context.Context, *pgxpool.Pool) error) *World {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL := DB(t)
	setZone(ctx, t, dbURL, "UTC")
	pool := Pool(t, dbURL)
	if err := create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	table, err := source.FromMapping(m)
	if err != nil {
		t.Fatal(err)
	}
	if table, err = pg.ResolveTable(ctx, pool, table); err != nil {
		t.Fatal(err)
	}
	creds, err := source.CredentialsOf(table, []byte(StoreSecret))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, dbURL, table, creds, session.Rule{})
	if _, err := pg.MigrateForeign(ctx, w.Pool, TablePublication, table); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return w
}
