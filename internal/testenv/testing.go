package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/pg"
)

// DefaultPublication is the publication name the tests migrate with.
const DefaultPublication = "session_invalidation"

// shared is the one Postgres of a test binary, started on first use and
// stopped by Main. Tests get their own database in it.
var shared struct {
	once     sync.Once
	pg       *Postgres
	template string
	err      error
	seq      atomic.Int64
}

// Main wraps testing.M: it runs the tests and then stops the shared
// Postgres, if one was started. Use it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.pg != nil {
		_ = shared.pg.Close()
	}
	os.Exit(code)
}

func sharedPostgres() (*Postgres, string, error) {
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		p, err := StartPostgres(ctx)
		if err != nil {
			shared.err = err
			return
		}
		shared.pg = p
		url, err := p.CreateDatabase(ctx, "template_sessionguard", "")
		if err != nil {
			shared.err = err
			return
		}
		if err := migrateURL(ctx, url); err != nil {
			shared.err = err
			return
		}
		shared.template = "template_sessionguard"
	})
	return shared.pg, shared.template, shared.err
}

// Migrate applies the project's migrations to the database at url.
func migrateURL(ctx context.Context, url string) error {
	pool, err := pg.NewPool(ctx, url, pg.PoolOptions{MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = pg.Migrate(ctx, pool, DefaultPublication)
	return err
}

// DB returns the URL of a fresh, migrated database (with the publication) on
// the test binary's shared Postgres. Each call gets its own database.
func DB(t testing.TB) string {
	t.Helper()
	p, tmpl, err := sharedPostgres()
	if err != nil {
		t.Fatalf("start test postgres: %v", err)
	}
	name := fmt.Sprintf("t%d_%s", shared.seq.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := p.CreateDatabase(ctx, name, tmpl)
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return url
}

// SharedPostgres returns the test binary's shared server (for tests that need
// its port or binaries). Do not stop it.
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, _, err := sharedPostgres()
	if err != nil {
		t.Fatalf("start test postgres: %v", err)
	}
	return p
}

// NewPostgres starts a Postgres of the test's own (for tests that stop or
// restart it), with a migrated database "app"; it returns the server and the
// database URL. It is removed when the test ends.
func NewPostgres(t testing.TB) (*Postgres, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartPostgres(ctx)
	if err != nil {
		t.Fatalf("start test postgres: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	url, err := p.CreateDatabase(ctx, "app", "")
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	if err := migrateURL(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return p, url
}

// NewStandby starts a hot standby of p, removed when the test ends, and
// returns it with the URL of its copy of database db.
func NewStandby(t testing.TB, p *Postgres, db string) (*Postgres, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := p.StartStandby(ctx)
	if err != nil {
		t.Fatalf("start standby: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.URL(db)
}

// NewRedis starts a redis-server of the test's own, stopped when the test
// ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := StartRedis(ctx)
	if err != nil {
		t.Fatalf("start test redis: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}
