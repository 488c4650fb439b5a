package cdc

import (
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
)

// Effects is the policy: what a row change of the sessions table does to the
// cache, judged at now. Every change to an existing session holds fills
// (Revoke, or an in-place update with HoldFills); an INSERT's drop does not,
// so a new session is cacheable at once.
func Effects(ch RowChange, now time.Time) []cache.Op {
	switch ch.Op {
	case OpInsert:
		if ch.NewKey == nil {
			return nil
		}
		// A new row can only make a cached "invalid" verdict wrong.
		return []cache.Op{cache.Drop(*ch.NewKey)}
	case OpDelete:
		if ch.OldID != nil {
			return []cache.Op{cache.RevokeByID(*ch.OldID)}
		}
		return []cache.Op{cache.Revoke(*ch.OldKey)}
	}
	if ch.ID != nil {
		// Only the id names the row's entries: the entry of another key
		// (the key changed) goes, and the row's fills wait (see Rekeyed).
		var ops []cache.Op
		if ch.NewKey == nil {
			ops = []cache.Op{cache.RevokeByID(*ch.ID)}
		} else {
			ops = append(keyEffects(ch, now), cache.Rekeyed(*ch.ID, *ch.NewKey))
		}
		if ch.OldID != nil && *ch.OldID != *ch.ID {
			ops = append(ops, cache.RevokeByID(*ch.OldID))
		}
		return ops
	}
	return keyEffects(ch, now)
}

// keyEffects is what an UPDATE does to the entries of its keys.
func keyEffects(ch RowChange, now time.Time) []cache.Op {
	if ch.OldKey != nil && *ch.OldKey != *ch.NewKey {
		// The key changed: the old key's entry and any negative entry for
		// the new key are both wrong now.
		return []cache.Op{cache.Revoke(*ch.OldKey), cache.Drop(*ch.NewKey)}
	}
	if ch.Row == nil || !ch.Row.ValidAt(now) {
		return []cache.Op{cache.Revoke(*ch.NewKey)}
	}
	// Still valid (expiry moved, say): update a cached entry in place. Apply
	// never creates an entry, and the held fills keep a validator that reads
	// the row before this commit is visible from filling the old version.
	return []cache.Op{{Hash: *ch.NewKey, Session: ch.Row, HoldFills: true}}
}
