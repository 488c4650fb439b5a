package cdc

import (
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// Role is this process's part in leader election.
type Role string

// Roles.
const (
	RoleStandby Role = "standby"
	RoleActive  Role = "active"
)

// Status is a snapshot of the consumer for health reporting.
type Status struct {
	Role         Role
	Slot         string
	Publication  string
	Table        string // the sessions table followed, as to_regclass reads it
	Streaming    bool   // active and reading the replication stream
	LastError    string // last error of the loop; empty once it recovers
	RedisFailing bool   // the applier is retrying Redis (nothing is acknowledged)
	// SourceProblems say why the watermark stands still: the sessions table
	// is not fully published, or its changes lack the key (with the fix).
	SourceProblems []string

	SlotFigures               // of the last read, for health
	Acked       pglogrepl.LSN // last flush position reported to the server
	LastEventAt time.Time     // last row change applied
	Watermark   time.Time     // Redis time of the last heartbeat applied
	ActiveSince time.Time

	Applied, Inserts, Updates, Deletes, Truncates uint64
	Undecodable                                   uint64 // changes that could not be decoded (each flushed the cache)
	Flushes                                       uint64 // whole-cache flushes, for any reason
	ForeignHeartbeats                             uint64 // messages with the heartbeat prefix this process did not sign

	// SyncState is this process's walsender's sync_state as last read
	// (async, potential, sync, quorum; "" unknown).
	SyncState string

	// ClockOffset is Redis's clock minus this host's, as of the last
	// heartbeat: the watermark is on Redis's clock.
	ClockOffset time.Duration
}

// LagSeconds is how far the cache is behind the database: now (this host's
// clock, moved onto Redis's by ClockOffset) minus the time of the last
// heartbeat that came back and was applied. Before the first heartbeat it
// counts from when this process became active.
func (s Status) LagSeconds(now time.Time) float64 {
	if s.Watermark.IsZero() {
		if s.ActiveSince.IsZero() {
			return 0
		}
		return max(0, now.Sub(s.ActiveSince).Seconds())
	}
	return max(0, now.Add(s.ClockOffset).Sub(s.Watermark).Seconds())
}

// status guards the Status a Consumer updates from several goroutines.
type status struct {
	mu sync.Mutex
	s  Status
}

func (st *status) update(fn func(*Status)) {
	st.mu.Lock()
	fn(&st.s)
	st.mu.Unlock()
}

func (st *status) get() Status {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s
}
