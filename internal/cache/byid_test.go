package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// fillIndexed looks h up and fills it as the row whose id hashes to id.
func fillIndexed(t *testing.T, c *cache.Cache, h, id session.Hash) bool {
	t.Helper()
	l, err := c.Lookup(context.Background(), h)
	if err != nil || l.Lease == "" {
		t.Fatalf("lookup: %+v %v", l, err)
	}
	ok, err := c.FillIndexed(context.Background(), l, validSession(time.Hour), id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func cached(t *testing.T, c *cache.Cache, h session.Hash) bool {
	t.Helper()
	l, err := c.Lookup(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	return l.Entry != nil && !l.Entry.Negative
}

// A DELETE that names only the row's id drops the entry its fill indexed,
// and refuses that row's fills (not another row's) until any lease taken
// before it has run out.
func TestRevokeByIDDropsTheIndexedEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{LeaseTTL: 300 * time.Millisecond, FillHold: 100 * time.Millisecond})
	tok, id := session.HashToken("token-a"), session.HashToken("id-a")
	other, otherID := session.HashToken("token-b"), session.HashToken("id-b")
	if !fillIndexed(t, c, tok, id) || !fillIndexed(t, c, other, otherID) {
		t.Fatal("fills refused")
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.RevokeByID(id)}); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, tok) || !cached(t, c, other) {
		t.Fatal("want the row's entry dropped and the other row's kept")
	}
	time.Sleep(150 * time.Millisecond) // the entry's own hold is over
	if fillIndexed(t, c, tok, id) {
		t.Fatal("a fill of the revoked row landed under its tombstone")
	}
	time.Sleep(400 * time.Millisecond) // LeaseTTL+FillHold
	if !fillIndexed(t, c, tok, id) {
		t.Fatal("the row's fills still refused after the tombstone")
	}
}

// The race the id index exists for: a validator took the lease and read the
// row before the DELETE committed; the DELETE is applied before its fill,
// and names only the id, which no fill has indexed yet. The fill is refused.
func TestFillRacingRevokeByIDNeverLands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	tok, id := session.HashToken("raced"), session.HashToken("raced-id")
	l, err := c.Lookup(ctx, tok) // 1. miss, lease
	if err != nil || l.Lease == "" {
		t.Fatal(l, err)
	}
	// 2. (the row is read) 3. the DELETE is applied
	if _, err := c.Apply(ctx, []cache.Op{cache.RevokeByID(id)}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.FillIndexed(ctx, l, validSession(time.Hour), id); ok || err != nil { // 4. the late fill
		t.Fatalf("late fill: %v %v", ok, err)
	}
	if cached(t, c, tok) {
		t.Fatal("the deleted row's entry is cached")
	}
}

// An UPDATE carries the row's id and its current key: an entry of the row
// under another key (the old token) is dropped, the current one kept.
func TestRekeyedDropsOnlyAnotherKeysEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	oldTok, newTok, id := session.HashToken("old"), session.HashToken("new"), session.HashToken("row")
	if !fillIndexed(t, c, oldTok, id) {
		t.Fatal("fill refused")
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.Rekeyed(id, oldTok)}); err != nil {
		t.Fatal(err)
	}
	if !cached(t, c, oldTok) {
		t.Fatal("an update that kept the key dropped its entry")
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.Rekeyed(id, newTok)}); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, oldTok) {
		t.Fatal("the old key's entry survived the key change")
	}
}

// A row's key rotates from A to B, and both keys are filled before the
// UPDATE is applied (B presented at once, A by a validator that read the
// row before the UPDATE): the index holds both, the UPDATE drops A, and a
// later DELETE by id drops B. Each index entry is a set of every key filled.
func TestIndexKeepsEveryKeyOfARow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	a, b, id := session.HashToken("key-a"), session.HashToken("key-b"), session.HashToken("row-x")
	la, err := c.Lookup(ctx, a) // a validator reads the row under A
	if err != nil || la.Lease == "" {
		t.Fatal(la, err)
	}
	if !fillIndexed(t, c, b, id) { // the UPDATE committed; B is presented and filled
		t.Fatal("fill of B refused")
	}
	if ok, err := c.FillIndexed(ctx, la, validSession(time.Hour), id); !ok || err != nil { // A's fill lands late
		t.Fatalf("late fill of A: %v %v", ok, err)
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.Rekeyed(id, b)}); err != nil { // the UPDATE is applied
		t.Fatal(err)
	}
	if cached(t, c, a) || !cached(t, c, b) {
		t.Fatal("want A dropped and B kept")
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.RevokeByID(id)}); err != nil { // the DELETE
		t.Fatal(err)
	}
	if cached(t, c, b) {
		t.Fatal("B survived the DELETE by id: its index was lost")
	}
}
