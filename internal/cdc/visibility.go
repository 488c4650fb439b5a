package cdc

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// snapshot is a pg_snapshot: transactions below xmin are complete, those at
// or above xmax had not started, and xip lists those in progress between.
type snapshot struct {
	xmin, xmax uint64
	xip        []uint64
}

// parseSnapshot reads pg_snapshot's text form, "xmin:xmax:xip1,xip2,...".
func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("bad snapshot %q", s)
	}
	var snap snapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("bad snapshot %q: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("bad snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("bad snapshot %q: %w", s, err)
			}
			snap.xip = append(snap.xip, v)
		}
	}
	return snap, nil
}

// fullXid widens a 32-bit xid (as pgoutput's BEGIN carries it) to the 64-bit
// id nearest to ref: the transaction is recent, so it lies within 2^31 of a
// current snapshot's bounds, on either side (a committing transaction that
// has not completed yet can be at or above xmax).
func fullXid(ref uint64, xid uint32) uint64 {
	return uint64(int64(ref) + int64(int32(xid-uint32(ref))))
}

// visible is pg_visible_in_snapshot for a 32-bit xid.
func (s snapshot) visible(xid uint32) bool {
	x := fullXid(s.xmax, xid)
	switch {
	case x < s.xmin:
		return true
	case x >= s.xmax:
		return false
	default:
		return !slices.Contains(s.xip, x)
	}
}

// snapshotReuse bounds how long a snapshot read may answer for later xids:
// widening a 32-bit xid against it stays right only while it is recent.
const snapshotReuse = 10 * time.Second

// visibility is the applier's view of which transactions readers can see.
type visibility struct {
	seen       snapshot // the last snapshot read: xids visible in it need no query
	seenAt     time.Time
	visibleXid uint32 // the last xid found visible
	state      string // sync_state of our walsender in pg_stat_replication
	stateAt    time.Time
}

// waitVisible returns once transaction xid is visible to new snapshots, or
// with ctx's error. Logical decoding hands out a commit as soon as its WAL is
// flushed, a moment before the committing backend makes it visible (with a
// synchronous standby, not until the standby answers). Dropping an entry in
// that moment would let a validator that misses read the old row and refill
// it after the drop, for good: no later event names that row. Nothing is
// acknowledged meanwhile, and the watermark stands still.
//
// If this process's own walsender is a synchronous standby (sync or
// quorum), the commit waits for our acknowledgement, so waiting here would
// stop every writer: with allowSync it then returns sync = true at once, and
// the caller applies, acknowledges and waits again (commitDeferred). A potential
// standby is waited for: commits do not wait for it.
func (a *applier) waitVisible(ctx context.Context, xid uint32, allowSync bool) (sync bool, err error) {
	v := &a.vis
	c := a.c
	// Visibility only grows: visible in a recent snapshot is visible now.
	if c.pool.Load() == nil || (v.seen.xmax != 0 && time.Since(v.seenAt) < snapshotReuse && v.seen.visible(xid)) {
		v.visibleXid = xid
		return false, nil
	}
	start, lastLog := time.Now(), time.Time{}
	wait := 100 * time.Microsecond
	for {
		var text string
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.pool.Load().QueryRow(qctx, `SELECT pg_current_snapshot()::text`).Scan(&text)
		cancel()
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err == nil {
			var snap snapshot
			if snap, err = parseSnapshot(text); err == nil {
				v.seen, v.seenAt = snap, time.Now()
				if snap.visible(xid) {
					v.visibleXid = xid
					return false, nil
				}
			}
		}
		if err != nil {
			c.log.Warn("cannot check that a transaction is visible; retrying (nothing is applied or acknowledged meanwhile)",
				zap.Uint32("xid", xid), zap.Error(err))
			wait = max(wait, 100*time.Millisecond)
		}
		state := a.syncState(ctx)
		if allowSync && (state == "sync" || state == "quorum") {
			return true, nil
		}
		if waited := time.Since(start); waited >= 500*time.Millisecond && time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			c.log.Warn("a committed transaction is not visible yet (a synchronous standby not answering?); waiting before applying it",
				zap.Uint32("xid", xid), zap.Duration("waited", waited), zap.String("our_sync_state", state))
		}
		sleep(ctx, wait)
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// syncState is our walsender's sync_state, read at most every 500ms; it
// also tells the receive loop whether to watch for immediate acks.
func (a *applier) syncState(ctx context.Context) string {
	v := &a.vis
	if time.Since(v.stateAt) < 500*time.Millisecond {
		return v.state
	}
	var state string
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := a.c.pool.Load().QueryRow(qctx, `SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE pid = $1), '')`,
		int64(a.walsenderPID)).Scan(&state)
	if err != nil {
		return v.state
	}
	if (state == "sync" || state == "quorum") && v.state != state {
		a.c.log.Error("this invalidator is a synchronous standby (it matches synchronous_standby_names): commits wait for it, so it applies before a change is visible, acknowledges at once and applies again once visible. Remove application_name sessionguard-invalidator from synchronous_standby_names")
	}
	v.state, v.stateAt = state, time.Now()
	a.syncMode.Store(state == "sync" || state == "quorum")
	a.c.st.update(func(s *Status) { s.SyncState = state })
	return state
}
