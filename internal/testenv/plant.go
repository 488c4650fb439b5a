package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// Row reads the row token names now (nil: none), as a validator's miss
// would.
func (w *World) Row(t testing.TB, token string) *session.Session {
	t.Helper()
	cred, err := w.Creds.Credential(token)
	if err != nil {
		t.Fatalf("read token: %v", err)
	}
	f, err := w.Store.Lookup(context.Background(), cred.Key)
	if err != nil {
		t.Fatal(err)
	}
	return f.Session
}

// Plant writes token's cache entry as a validator's fill would, whatever
// Postgres says now: sess, or a negative entry when sess is nil. It waits
// for a fill lease (a recent change may hold fills for a moment).
func (w *World) Plant(t testing.TB, token string, sess *session.Session) {
	t.Helper()
	ctx := context.Background()
	cred, err := w.Creds.Credential(token)
	if err != nil {
		t.Fatalf("read token: %v", err)
	}
	var l cache.Lookup
	WaitFor(t, 10*time.Second, "a fill lease", func() bool {
		l, err = w.Cache.Lookup(ctx, cred.Key.Hash)
		return err == nil && l.Lease != ""
	})
	if ok, err := w.Cache.Fill(ctx, l, sess); !ok || err != nil {
		t.Fatalf("fill: %v %v", ok, err)
	}
}
