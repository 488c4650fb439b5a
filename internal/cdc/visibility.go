package cdc

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
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
