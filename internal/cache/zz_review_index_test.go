package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// Token rotation on a ByID table: the client uses the new key B before the
// invalidator applies the UPDATE. B's fill overwrites i:X (A -> B); the
// Rekeyed op then keeps B and never drops A; a later DELETE(X) drops B only.
func TestZZReviewRotationOrphansOldKey(t *testing.T) {
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	a, b, id := session.HashToken("old-A"), session.HashToken("new-B"), session.HashToken("row-X")
	if !fillIndexed(t, c, a, id) { // A cached before the UPDATE
		t.Fatal("fill A")
	}
	// UPDATE key A->B commits; the client presents B at once
	if !fillIndexed(t, c, b, id) {
		t.Fatal("fill B")
	}
	// invalidator applies the UPDATE as policy.Effects builds it (row valid)
	if _, err := c.Apply(ctx, []cache.Op{{Hash: b, Session: validSession(time.Hour), HoldFills: true}, cache.Rekeyed(id, b)}); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, a) {
		t.Error("old key A still cached valid after the row's key changed")
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.RevokeByID(id)}); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, a) {
		t.Error("old key A still cached valid after DELETE of the row")
	}
}

// An old-key fill (lease + read before the UPDATE) lands after the new key's
// fill and before the op: the op drops A and the index, leaving B unindexed;
// a later DELETE(X) misses B.
func TestZZReviewLateOldFillUnindexesCurrent(t *testing.T) {
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	a, b, id := session.HashToken("old-A2"), session.HashToken("new-B2"), session.HashToken("row-X2")
	la, err := c.Lookup(ctx, a) // V1: miss, lease, reads row X (key A)
	if err != nil || la.Lease == "" {
		t.Fatal(la, err)
	}
	// UPDATE A->B commits; V2 fills B
	if !fillIndexed(t, c, b, id) {
		t.Fatal("fill B")
	}
	// V1's fill lands (no tombstone yet)
	if ok, err := c.FillIndexed(ctx, la, validSession(time.Hour), id); !ok || err != nil {
		t.Fatal("late fill A", ok, err)
	}
	if _, err := c.Apply(ctx, []cache.Op{{Hash: b, Session: validSession(time.Hour), HoldFills: true}, cache.Rekeyed(id, b)}); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, a) {
		t.Error("A survived")
	}
	// later: DELETE X
	if _, err := c.Apply(ctx, []cache.Op{cache.RevokeByID(id)}); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, b) {
		t.Error("current key B still cached valid after DELETE of the row (index lost)")
	}
}
