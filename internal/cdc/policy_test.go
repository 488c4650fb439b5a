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
				if g.Hash != w.Hash || g.HoldFills != w.HoldFills || g.Session != w.Session {
					t.Fatalf("op %d: got {hash %x.. session %v hold %v}, want {hash %x.. session %v hold %v}",
						i, g.Hash[:4], g.Session, g.HoldFills, w.Hash[:4], w.Session, w.HoldFills)
				}
			}
		})
	}
}
