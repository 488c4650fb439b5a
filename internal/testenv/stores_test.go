package testenv

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The expected shapes below were read, with storeTableShape's query, from
// databases the projects set up themselves: better-auth 1.7.25's
// getMigrations, ory/kratos's PostgreSQL migrations replayed in popx's
// order, connect-pg-simple 10.0.0's createTableIfMissing and Django's
// migrate. Lucia's guide has no tool, so its shape is what its DDL makes.

// storeTableShape describes a table as the catalog holds it: its columns (type,
// nullability, default), constraints, indexes and replica identity.
func storeTableShape(t *testing.T, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT line FROM (
		SELECT 1 AS k, a.attnum::int AS n, 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			|| CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
			|| coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT 2, 0, 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass
		UNION ALL
		SELECT 3, 0, 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1::regclass
		UNION ALL
		SELECT 4, 0, 'replica identity ' || relreplident::text FROM pg_class WHERE oid = $1::regclass
	) s ORDER BY k, n, line`, table)
	if err != nil {
		t.Fatalf("describe %s: %v", table, err)
	}
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func storeCheckShape(t *testing.T, pool *pgxpool.Pool, table string, want ...string) {
	t.Helper()
	if got := storeTableShape(t, pool, table); !slices.Equal(got, want) {
		t.Errorf("%s is not as its project creates it:\ngot\n  %s\nwant\n  %s", table, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func storeExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func storeCount(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func storeWithin(t *testing.T, what string, got, want time.Time, slack time.Duration) {
	t.Helper()
	if d := got.Sub(want); d < -slack || d > slack {
		t.Errorf("%s = %v, want %v (±%v)", what, got, want, slack)
	}
}

var (
	storeAlnum32   = regexp.MustCompile(`^[A-Za-z0-9]{32}$`)
	storeLowerNum  = regexp.MustCompile(`^[a-z0-9]{32}$`)
	storeBase32Low = regexp.MustCompile(`^[a-z2-7]{32}$`)
	storeHex64     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func TestBetterAuthStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := Pool(t, DB(t))
	if err := CreateBetterAuthSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	storeCheckShape(t, pool, `"user"`,
		"column id text not null",
		"column name text not null",
		"column email text not null",
		"column emailVerified boolean not null",
		"column image text",
		"column createdAt timestamp with time zone not null default CURRENT_TIMESTAMP",
		"column updatedAt timestamp with time zone not null default CURRENT_TIMESTAMP",
		"constraint user_email_key UNIQUE (email)",
		"constraint user_pkey PRIMARY KEY (id)",
		`index CREATE UNIQUE INDEX user_email_key ON public."user" USING btree (email)`,
		`index CREATE UNIQUE INDEX user_pkey ON public."user" USING btree (id)`,
		"replica identity d")
	storeCheckShape(t, pool, "session",
		"column id text not null",
		"column expiresAt timestamp with time zone not null",
		"column token text not null",
		"column createdAt timestamp with time zone not null default CURRENT_TIMESTAMP",
		"column updatedAt timestamp with time zone not null",
		"column ipAddress text",
		"column userAgent text",
		"column userId text not null",
		"constraint session_pkey PRIMARY KEY (id)",
		"constraint session_token_key UNIQUE (token)",
		`constraint session_userId_fkey FOREIGN KEY ("userId") REFERENCES "user"(id) ON DELETE CASCADE`,
		`index CREATE INDEX "session_userId_idx" ON public.session USING btree ("userId")`,
		"index CREATE UNIQUE INDEX session_pkey ON public.session USING btree (id)",
		"index CREATE UNIQUE INDEX session_token_key ON public.session USING btree (token)",
		"replica identity d")

	// Signed and sent by better-auth 1.7.25 for this secret and token.
	const secret = "test-secret-0123456789abcdef0123456789"
	if got, want := BetterAuthSign(secret, "s2tlPqoUtEzwKTn1zZ9N4ca7mVIonIAt"), "s2tlPqoUtEzwKTn1zZ9N4ca7mVIonIAt.r2HvedsToYjxnRco61Hf9D8+KRGF3m63Ii+YpQ8A9gg="; got != want {
		t.Errorf("BetterAuthSign = %q, want %q", got, want)
	}
	if got, want := BetterAuthCookie("s2tlPqoUtEzwKTn1zZ9N4ca7mVIonIAt.r2HvedsToYjxnRco61Hf9D8+KRGF3m63Ii+YpQ8A9gg="),
		"better-auth.session_token=s2tlPqoUtEzwKTn1zZ9N4ca7mVIonIAt.r2HvedsToYjxnRco61Hf9D8%2BKRGF3m63Ii%2BYpQ8A9gg%3D"; got != want {
		t.Errorf("BetterAuthCookie = %q, want %q", got, want)
	}

	alice, bob := betterAuthID(), betterAuthID()
	presented, id, token, err := BetterAuthSignIn(ctx, pool, secret, alice)
	if err != nil {
		t.Fatal(err)
	}
	if !storeAlnum32.MatchString(id) || !storeAlnum32.MatchString(token) || id == token {
		t.Errorf("id %q and token %q: want two distinct generateId() strings", id, token)
	}
	if presented != BetterAuthSign(secret, token) {
		t.Errorf("presented %q is not the signed token", presented)
	}
	var (
		rowToken, rowUser string
		created, updated  time.Time
		expires           time.Time
		ip, agent         *string
	)
	err = pool.QueryRow(ctx, `SELECT token, "userId", "createdAt", "updatedAt", "expiresAt", "ipAddress", "userAgent" FROM "session" WHERE id = $1`, id).
		Scan(&rowToken, &rowUser, &created, &updated, &expires, &ip, &agent)
	if err != nil {
		t.Fatal(err)
	}
	if rowToken != token || rowUser != alice || !updated.Equal(created) || ip == nil || agent == nil {
		t.Errorf("row: token %q user %q created %v updated %v ip %v agent %v", rowToken, rowUser, created, updated, ip, agent)
	}
	storeWithin(t, "expiresAt", expires, created.Add(7*24*time.Hour), 0)
	storeWithin(t, "createdAt", created, time.Now(), time.Minute)

	_, _, second, err := BetterAuthSignIn(ctx, pool, secret, alice) // the user exists now
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := BetterAuthSignIn(ctx, pool, secret, bob); err != nil {
		t.Fatal(err)
	}
	if err := BetterAuthSignOut(ctx, pool, token); err != nil {
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM "session" WHERE token IN ($1, $2)`, token, second); n != 1 {
		t.Errorf("after sign-out %d of the two sessions remain, want 1", n)
	}
	if err := BetterAuthRevokeAll(ctx, pool, alice); err != nil {
		t.Fatal(err)
	}
	if a, b := storeCount(t, pool, `SELECT count(*) FROM "session" WHERE "userId" = $1`, alice), storeCount(t, pool, `SELECT count(*) FROM "session" WHERE "userId" = $1`, bob); a != 0 || b != 1 {
		t.Errorf("after revoking alice: alice has %d sessions, bob %d; want 0 and 1", a, b)
	}
	storeExec(t, pool, `DELETE FROM "user" WHERE id = $1`, bob)
	if n := storeCount(t, pool, `SELECT count(*) FROM "session"`); n != 0 {
		t.Errorf("deleting the user left %d sessions (on delete cascade)", n)
	}
}

func TestKratosStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := Pool(t, KratosDB(t))
	storeCheckShape(t, pool, "networks",
		"column id uuid not null",
		"column created_at timestamp without time zone not null",
		"column updated_at timestamp without time zone not null",
		"constraint networks_pkey PRIMARY KEY (id)",
		"index CREATE UNIQUE INDEX networks_pkey ON public.networks USING btree (id)",
		"replica identity d")
	storeCheckShape(t, pool, "identities",
		"column id uuid not null",
		"column schema_id character varying(2048) not null",
		"column traits jsonb not null",
		"column created_at timestamp without time zone not null",
		"column updated_at timestamp without time zone not null",
		"column nid uuid",
		"column state character varying(255) not null default 'active'::character varying",
		"column state_changed_at timestamp without time zone",
		"column metadata_public jsonb",
		"column metadata_admin jsonb",
		"column available_aal character varying(4)",
		"column organization_id uuid",
		"column external_id character varying(64)",
		"constraint identities_external_id_check CHECK (((external_id IS NULL) OR ((external_id)::text <> ''::text)))",
		"constraint identities_nid_fk_idx FOREIGN KEY (nid) REFERENCES networks(id) ON UPDATE RESTRICT ON DELETE CASCADE",
		"constraint identities_pkey PRIMARY KEY (id)",
		"index CREATE INDEX identities_nid_id_idx ON public.identities USING btree (nid, id)",
		"index CREATE INDEX identities_nid_organization_id_idx ON public.identities USING btree (organization_id)",
		"index CREATE UNIQUE INDEX identities_nid_external_id_idx ON public.identities USING btree (nid, external_id) WHERE (external_id IS NOT NULL)",
		"index CREATE UNIQUE INDEX identities_pkey ON public.identities USING btree (id)",
		"replica identity d")
	storeCheckShape(t, pool, "sessions",
		"column id uuid not null",
		"column issued_at timestamp without time zone not null default CURRENT_TIMESTAMP",
		"column expires_at timestamp without time zone not null",
		"column authenticated_at timestamp without time zone not null",
		"column identity_id uuid not null",
		"column created_at timestamp without time zone not null",
		"column updated_at timestamp without time zone not null",
		"column token character varying(39)",
		"column active boolean default false",
		"column nid uuid",
		"column logout_token character varying(39)",
		"column aal character varying(4) not null default 'aal1'::character varying",
		"column authentication_methods jsonb not null",
		"constraint sessions_identity_id_fkey FOREIGN KEY (identity_id) REFERENCES identities(id) ON DELETE CASCADE",
		"constraint sessions_nid_fk_idx FOREIGN KEY (nid) REFERENCES networks(id) ON UPDATE RESTRICT ON DELETE CASCADE",
		"constraint sessions_pkey PRIMARY KEY (id)",
		"index CREATE INDEX sessions_list_active_idx ON public.sessions USING btree (nid, expires_at, active, created_at DESC, id)",
		"index CREATE INDEX sessions_list_identity_idx ON public.sessions USING btree (identity_id, nid, created_at DESC)",
		"index CREATE INDEX sessions_list_idx ON public.sessions USING btree (nid, created_at DESC, id)",
		"index CREATE UNIQUE INDEX sessions_logout_token_uq_idx ON public.sessions USING btree (logout_token)",
		"index CREATE UNIQUE INDEX sessions_pkey ON public.sessions USING btree (id)",
		"index CREATE UNIQUE INDEX sessions_token_uq_idx ON public.sessions USING btree (token)",
		"replica identity d")

	identity := uuid.NewString()
	token, id, err := KratosSignIn(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ory_st_[A-Za-z0-9]{32}$`).MatchString(token) {
		t.Errorf("token %q: want ory_st_ and 32 alphanumerics", token)
	}
	var (
		active                        bool
		aal, logout, nid, amr, tokenC string
		issued, authn, expires, creat time.Time
	)
	err = pool.QueryRow(ctx, `SELECT active, aal, logout_token, nid::text, authentication_methods::text, token, issued_at, authenticated_at, expires_at, created_at
		FROM sessions WHERE id = $1 AND identity_id = $2`, id, identity).
		Scan(&active, &aal, &logout, &nid, &amr, &tokenC, &issued, &authn, &expires, &creat)
	if err != nil {
		t.Fatal(err)
	}
	if !active || aal != "aal1" || tokenC != token || !strings.HasPrefix(logout, "ory_lo_") || len(logout) != 39 {
		t.Errorf("row: active %v aal %q token %q logout_token %q", active, aal, tokenC, logout)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM networks WHERE id = $1`, nid); n != 1 {
		t.Errorf("nid %s is not the network", nid)
	}
	var methods []struct{ Method, AAL string }
	if err := json.Unmarshal([]byte(amr), &methods); err != nil || len(methods) != 1 || methods[0].Method != "password" || methods[0].AAL != "aal1" {
		t.Errorf("authentication_methods %s: want one password aal1 entry (%v)", amr, err)
	}
	if !issued.Equal(authn) || !creat.Equal(authn) {
		t.Errorf("issued_at %v, created_at %v, authenticated_at %v: want one instant", issued, creat, authn)
	}
	storeWithin(t, "expires_at", expires, authn.Add(24*time.Hour), 0)
	storeWithin(t, "authenticated_at (UTC wall clock)", authn, time.Now().UTC(), time.Minute)

	if n, err := KratosDeactivate(ctx, pool, id); err != nil || n != 1 {
		t.Fatalf("deactivate: found %d, %v", n, err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM sessions WHERE id = $1 AND active = false`, id); n != 1 {
		t.Error("deactivate left the session active or removed it")
	}
	if n, err := KratosDeactivate(ctx, pool, uuid.NewString()); err != nil || n != 0 {
		t.Errorf("deactivate of no session: found %d, %v", n, err)
	}
	other, otherID, err := KratosSignIn(ctx, pool, identity)
	if err != nil {
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM networks`); n != 1 {
		t.Errorf("%d networks, want the one Kratos determined", n)
	}
	if got, err := KratosLogout(ctx, pool, other); err != nil || got != otherID {
		t.Errorf("logout: revoked %q, %v; want %q", got, err, otherID)
	}
	if err := KratosDelete(ctx, pool, id); err != nil {
		t.Fatal(err)
	}
	if a, b := storeCount(t, pool, `SELECT count(*) FROM sessions WHERE id = $1`, id), storeCount(t, pool, `SELECT count(*) FROM sessions WHERE id = $1 AND NOT active`, otherID); a != 0 || b != 1 {
		t.Errorf("after delete: %d rows of the deleted session, %d inactive rows of the logged-out one; want 0 and 1", a, b)
	}
}

func TestConnectPGSimpleStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := Pool(t, DB(t))
	if err := CreateConnectPGSimpleSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	storeCheckShape(t, pool, "session",
		"column sid character varying not null",
		"column sess json not null",
		"column expire timestamp(6) without time zone not null",
		"constraint session_pkey PRIMARY KEY (sid)",
		`index CREATE INDEX "IDX_session_expire" ON public.session USING btree (expire)`,
		"index CREATE UNIQUE INDEX session_pkey ON public.session USING btree (sid)",
		"replica identity d")

	// Set by express-session 1.19.0 with connect-pg-simple 10.0.0 for this
	// secret and sid, after passport's login of user "42".
	if got, want := ConnectPGSimpleCookie("keyboard cat", "fOskNy93hcVFERDdGOnZQgx63c2i1gfi"),
		"connect.sid=s%3AfOskNy93hcVFERDdGOnZQgx63c2i1gfi.r3F7gPoOqlTcOClhtG2fhQF4usBpd0vQuaD6N4FFpkw"; got != want {
		t.Errorf("ConnectPGSimpleCookie = %q, want %q", got, want)
	}
	if got, want := string(ConnectPGSimpleSess("42")), `{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"passport":{"user":"42"}}`; got != want {
		t.Errorf("ConnectPGSimpleSess = %s, want %s", got, want)
	}

	cookie, sid, err := ConnectPGSimpleSignIn(ctx, pool, "keyboard cat", "42")
	if err != nil {
		t.Fatal(err)
	}
	if len(sid) != 32 || cookie != ConnectPGSimpleCookie("keyboard cat", sid) {
		t.Errorf("sid %q, cookie %q", sid, cookie)
	}
	// expire holds to_timestamp of whole seconds in the session's time zone.
	expiresAt := func() (local string, whole bool) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT to_char(expire, 'YYYY-MM-DD HH24:MI:SS'), date_trunc('second', expire) = expire FROM "session" WHERE sid = $1`, sid).Scan(&local, &whole); err != nil {
			t.Fatal(err)
		}
		return local, whole
	}
	wantLocal := func(at time.Time) string {
		t.Helper()
		var s string
		if err := pool.QueryRow(ctx, `SELECT to_char(to_timestamp($1) AT TIME ZONE current_setting('TimeZone'), 'YYYY-MM-DD HH24:MI:SS')`, ceilUnix(at)).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got, whole := expiresAt(); !whole || got < wantLocal(time.Now().Add(ConnectPGSimpleTTL-time.Minute)) || got > wantLocal(time.Now().Add(ConnectPGSimpleTTL)) {
		t.Errorf("expire %s (whole seconds: %v), want about a day from now in whole seconds", got, whole)
	}

	touched := time.Now().Add(3 * time.Hour).Add(500 * time.Millisecond)
	if err := ConnectPGSimpleTouch(ctx, pool, sid, touched); err != nil {
		t.Fatal(err)
	}
	var sess string
	if err := pool.QueryRow(ctx, `SELECT sess::text FROM "session" WHERE sid = $1`, sid).Scan(&sess); err != nil {
		t.Fatal(err)
	}
	if got, _ := expiresAt(); got != wantLocal(touched) || sess != string(ConnectPGSimpleSess("42")) {
		t.Errorf("after touch: expire %s (want %s), sess %s", got, wantLocal(touched), sess)
	}
	if err := ConnectPGSimpleSet(ctx, pool, sid, ConnectPGSimpleSess("43"), touched); err != nil { // the upsert path
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM "session" WHERE sid = $1 AND sess->'passport'->>'user' = '43'`, sid); n != 1 {
		t.Error("set on an existing sid did not update it")
	}
	if err := ConnectPGSimpleDestroy(ctx, pool, sid); err != nil {
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM "session"`); n != 0 {
		t.Errorf("destroy left %d rows", n)
	}
}

func TestDjangoStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := Pool(t, DB(t))
	if err := CreateDjangoSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	storeCheckShape(t, pool, "django_session",
		"column session_key character varying(40) not null",
		"column session_data text not null",
		"column expire_date timestamp with time zone not null",
		"constraint django_session_pkey PRIMARY KEY (session_key)",
		"index CREATE INDEX django_session_expire_date_a5c62663 ON public.django_session USING btree (expire_date)",
		"index CREATE INDEX django_session_session_key_c0390e0f_like ON public.django_session USING btree (session_key varchar_pattern_ops)",
		"index CREATE UNIQUE INDEX django_session_pkey ON public.django_session USING btree (session_key)",
		"replica identity d")

	// SessionStore().encode({"a": 1}) by Django 3.2, SECRET_KEY "x", at
	// time 1767225600.5: too short to compress.
	at := time.Unix(1767225600, 500e6)
	if got, want := DjangoSessionData("x", []byte(`{"a":1}`), at), "eyJhIjoxfQ:1vb66i:Ft_f58_aA-DVskuwZYYyXVOGjQnusLbvYNwhTikwp3M"; got != want {
		t.Errorf("DjangoSessionData = %q, want %q", got, want)
	}
	login := []byte(`{"_auth_user_id":"42","_auth_user_backend":"django.contrib.auth.backends.ModelBackend","_auth_user_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`)
	parts := strings.Split(DjangoSessionData("x", login, at), ":")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], ".") || parts[1] != "1vb66i" {
		t.Fatalf("compressed session data %q: want .payload:1vb66i:signature", parts)
	}
	z, err := base64.RawURLEncoding.DecodeString(parts[0][1:])
	if err != nil {
		t.Fatal(err)
	}
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, login) {
		t.Errorf("compressed payload reads %q, %v", got, err)
	}

	key := DjangoNewSessionKey()
	if !storeLowerNum.MatchString(key) {
		t.Errorf("session key %q: want 32 of a-z0-9", key)
	}
	if err := DjangoCreate(ctx, pool, "x", key, login); err != nil {
		t.Fatal(err)
	}
	var (
		data    string
		expires time.Time
	)
	if err := pool.QueryRow(ctx, `SELECT session_data, expire_date FROM django_session WHERE session_key = $1`, key).Scan(&data, &expires); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(data, ".") || strings.Count(data, ":") != 2 {
		t.Errorf("session_data %q is not signing.dumps output", data)
	}
	storeWithin(t, "expire_date", expires, time.Now().Add(14*24*time.Hour), time.Minute)
	if err := DjangoCreate(ctx, pool, "x", key, login); err == nil {
		t.Error("creating an existing key succeeded; Django's must_create relies on the primary key refusing it")
	}
	if err := DjangoDelete(ctx, pool, key); err != nil {
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM django_session`); n != 0 {
		t.Errorf("delete left %d rows", n)
	}
}

func TestLuciaStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := Pool(t, DB(t))
	if err := CreateLuciaSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	storeCheckShape(t, pool, "app_user",
		"column id integer not null default nextval('app_user_id_seq'::regclass)",
		"column username text not null",
		"constraint app_user_pkey PRIMARY KEY (id)",
		"constraint app_user_username_key UNIQUE (username)",
		"index CREATE UNIQUE INDEX app_user_pkey ON public.app_user USING btree (id)",
		"index CREATE UNIQUE INDEX app_user_username_key ON public.app_user USING btree (username)",
		"replica identity d")
	storeCheckShape(t, pool, "user_session",
		"column id text not null",
		"column user_id integer not null",
		"column expires_at timestamp with time zone not null",
		"constraint user_session_pkey PRIMARY KEY (id)",
		"constraint user_session_user_id_fkey FOREIGN KEY (user_id) REFERENCES app_user(id)",
		"index CREATE UNIQUE INDEX user_session_pkey ON public.user_session USING btree (id)",
		"replica identity d")

	if got, want := LuciaSessionID("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("LuciaSessionID = %q, want %q", got, want)
	}
	alice, err := LuciaCreateUser(ctx, pool, "alice")
	if err != nil {
		t.Fatal(err)
	}
	token := LuciaToken()
	if !storeBase32Low.MatchString(token) {
		t.Errorf("token %q: want 32 characters of lowercase base32", token)
	}
	id, err := LuciaCreateSession(ctx, pool, token, alice)
	if err != nil {
		t.Fatal(err)
	}
	if !storeHex64.MatchString(id) || id != LuciaSessionID(token) {
		t.Errorf("id %q: want the hex SHA-256 of the token", id)
	}
	var expires time.Time
	if err := pool.QueryRow(ctx, `SELECT expires_at FROM user_session WHERE id = $1 AND user_id = $2`, id, alice).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	storeWithin(t, "expires_at", expires, time.Now().Add(30*24*time.Hour), time.Minute)
	if expires.Nanosecond()%int(time.Millisecond) != 0 {
		t.Errorf("expires_at %v is finer than a JavaScript Date", expires)
	}

	second, err := LuciaCreateSession(ctx, pool, LuciaToken(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := LuciaInvalidate(ctx, pool, id); err != nil {
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM user_session WHERE id IN ($1, $2)`, id, second); n != 1 {
		t.Errorf("after invalidate %d of the two sessions remain, want 1", n)
	}
	if err := LuciaInvalidateAll(ctx, pool, alice); err != nil {
		t.Fatal(err)
	}
	if n := storeCount(t, pool, `SELECT count(*) FROM user_session`); n != 0 {
		t.Errorf("invalidate all left %d sessions", n)
	}
}

func TestEncodeURIComponent(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"s:abc.d+e/f=": "s%3Aabc.d%2Be%2Ff%3D",
		"-_.!~*'()":    "-_.!~*'()",
		"a b&c=d?é":    "a%20b%26c%3Dd%3F%C3%A9",
		"AZaz09":       "AZaz09",
	} {
		if got := EncodeURIComponent(in); got != want {
			t.Errorf("EncodeURIComponent(%q) = %q, want %q", in, got, want)
		}
	}
}
