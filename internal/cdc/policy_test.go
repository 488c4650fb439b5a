package cdc

import (
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

func TestEffects(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	h1, h2 := session.HashToken("one"), session.HashToken("two")
	id1, id2 := session.HashToken("id-one"), session.HashToken("id-two")
	valid := &session.Session{ID: "s", UserID: "u", ExpiresAt: now.Add(time.Hour)}
	revokedAt := now.Add(-time.Minute)
	revoked := &session.Session{ID: "s", UserID: "u", ExpiresAt: now.Add(time.Hour), RevokedAt: &revokedAt}
	expired := &session.Session{ID: "s", UserID: "u", ExpiresAt: now.Add(-time.Second)}
	expiresNow := &session.Session{ID: "s", UserID: "u", ExpiresAt: now}
	cases := []struct {
		name string
		ch   RowChange
		want []cache.Op
	}{
		{"insert drops the new key without holding fills",
			RowChange{Op: OpInsert, NewKey: &h1}, []cache.Op{{Hash: h1}}},
		{"delete revokes the old key",
			RowChange{Op: OpDelete, OldKey: &h1}, []cache.Op{{Hash: h1, HoldFills: true}}},
		{"key changed: revoke old, drop new",
			RowChange{Op: OpUpdate, OldKey: &h1, NewKey: &h2, Row: valid}, []cache.Op{{Hash: h1, HoldFills: true}, {Hash: h2}}},
		{"key changed, row revoked: still revoke old, drop new",
			RowChange{Op: OpUpdate, OldKey: &h1, NewKey: &h2, Row: revoked}, []cache.Op{{Hash: h1, HoldFills: true}, {Hash: h2}}},
		{"same key, valid row: update in place, holding fills",
			RowChange{Op: OpUpdate, NewKey: &h1, Row: valid}, []cache.Op{{Hash: h1, Session: valid, HoldFills: true}}},
		{"same key sent as old key (full identity), valid row: in place",
			RowChange{Op: OpUpdate, OldKey: &h1, NewKey: &h1, Row: valid}, []cache.Op{{Hash: h1, Session: valid, HoldFills: true}}},
		{"same key, revoked row: revoke",
			RowChange{Op: OpUpdate, NewKey: &h1, Row: revoked}, []cache.Op{{Hash: h1, HoldFills: true}}},
		{"same key, expired row: revoke",
			RowChange{Op: OpUpdate, NewKey: &h1, Row: expired}, []cache.Op{{Hash: h1, HoldFills: true}}},
		{"same key, expires exactly now: revoke",
			RowChange{Op: OpUpdate, NewKey: &h1, Row: expiresNow}, []cache.Op{{Hash: h1, HoldFills: true}}},
		{"same key, no row (unchanged toast): revoke rather than guess",
			RowChange{Op: OpUpdate, NewKey: &h1}, []cache.Op{{Hash: h1, HoldFills: true}}},

		// Tables whose DELETE names only the id (ByID).
		{"by id: delete revokes through the index",
			RowChange{Op: OpDelete, OldID: &id1}, []cache.Op{{ID: &id1}}},
		{"by id: update keeps its key's entry in place and rekeys",
			RowChange{Op: OpUpdate, NewKey: &h1, ID: &id1, Row: valid}, []cache.Op{{Hash: h1, Session: valid, HoldFills: true}, {ID: &id1, Hash: h1}}},
		{"by id: update to a revoked row revokes its key and rekeys",
			RowChange{Op: OpUpdate, NewKey: &h1, ID: &id1, Row: revoked}, []cache.Op{{Hash: h1, HoldFills: true}, {ID: &id1, Hash: h1}}},
		{"by id: primary key changed: the old id is revoked too",
			RowChange{Op: OpUpdate, NewKey: &h1, ID: &id1, OldID: &id2, Row: valid}, []cache.Op{{Hash: h1, Session: valid, HoldFills: true}, {ID: &id1, Hash: h1}, {ID: &id2}}},
		{"by id: an update leaving no key revokes through the index",
			RowChange{Op: OpUpdate, ID: &id1, Row: valid}, []cache.Op{{ID: &id1}}},
		{"by id: an insert without a key does nothing",
			RowChange{Op: OpInsert}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Effects(tc.ch, now)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d ops %+v, want %+v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Hash != w.Hash || g.HoldFills != w.HoldFills || g.Session != w.Session || (g.ID == nil) != (w.ID == nil) || (g.ID != nil && *g.ID != *w.ID) {
					t.Fatalf("op %d: got {hash %x.. session %v hold %v}, want {hash %x.. session %v hold %v}",
						i, g.Hash[:4], g.Session, g.HoldFills, w.Hash[:4], w.Session, w.HoldFills)
				}
			}
		})
	}
}

// An op that may end a session is checked for visibility (else a
// validator's read before it refills the old row once the hold lapses),
// including an op by id, which holds its row's fills by a tombstone of its
// own.
func TestNeedsVisibility(t *testing.T) {
	t.Parallel()
	h := session.HashToken("x")
	for _, tc := range []struct {
		name string
		b    batch
		want bool
	}{
		{"insert's drop", batch{ops: []cache.Op{cache.Drop(h)}}, false},
		{"revoke", batch{ops: []cache.Op{cache.Revoke(h)}}, true},
		{"delete by id", batch{ops: []cache.Op{cache.RevokeByID(h)}}, true},
		{"update by id", batch{ops: []cache.Op{cache.Rekeyed(h, h)}}, true},
		{"flush", batch{flush: "truncate"}, true},
	} {
		if got := tc.b.needsVisibility(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
