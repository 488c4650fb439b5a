package testenv_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestPostgresIsLogicalAndMigrated(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, testenv.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var wal string
	if err := c.QueryRow(ctx, "SHOW wal_level").Scan(&wal); err != nil {
		t.Fatal(err)
	}
	if wal != "logical" {
		t.Fatalf("wal_level = %q, want logical", wal)
	}
	var pub int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = 'sessions'", testenv.DefaultPublication).Scan(&pub); err != nil {
		t.Fatal(err)
	}
	if pub != 1 {
		t.Fatalf("publication does not publish sessions")
	}
}

func TestRedisRestartLosesData(t *testing.T) {
	ctx := context.Background()
	r := testenv.NewRedis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded after stop")
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart exists=%d err=%v, want 0, nil", n, err)
	}
}
