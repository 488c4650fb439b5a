// Package invalidator serves the invalidator's HTTP endpoints: /livez,
// /readyz, /health (the contract's health document) and /metrics.
package invalidator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionguard/sessionguard/internal/cdc"
)

// StatusSource is what the health endpoints read; *cdc.Consumer satisfies it.
type StatusSource interface {
	Status() cdc.Status
}

// Options configure the handler.
type Options struct {
	Source       StatusSource
	LagThreshold time.Duration // readyz fails and health degrades above this lag
	Gatherer     prometheus.Gatherer
	Now          func() time.Time
}

// Health is the /health document.
type Health struct {
	Status            string  `json:"status"`
	Role              string  `json:"role"`
	Slot              string  `json:"slot"`
	Publication       string  `json:"publication"`
	Table             string  `json:"table"`
	Lag               Lag     `json:"lag"`
	ConfirmedFlushLSN string  `json:"confirmedFlushLsn"`
	ServerWALLSN      string  `json:"serverWalLsn"`
	LastEventAt       *string `json:"lastEventAt"`
	Watermark         *string `json:"watermark"`
	Events            Events  `json:"events"`
	WAL               WAL     `json:"wal"`
	// ClockOffsetSeconds is Redis's clock minus this host's.
	ClockOffsetSeconds float64  `json:"clockOffsetSeconds"`
	Errors             []string `json:"errors,omitempty"`
	Warnings           []string `json:"warnings,omitempty"`
}

// WAL is what the slot holds back and how much more it may.
type WAL struct {
	SlotStatus string `json:"slotStatus"` // wal_status: reserved, extended, unreserved, lost ("" unknown)
	// SafeBytes is WAL that can still be written before the slot is lost;
	// null when max_slot_wal_keep_size is unlimited or it is unknown.
	SafeBytes       *int64 `json:"safeBytes"`
	KeepSizeLimited bool   `json:"keepSizeLimited"` // max_slot_wal_keep_size is set
}

// Lag is how far the cache is behind the database.
type Lag struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// Events counts applied row changes.
type Events struct {
	Applied   uint64 `json:"applied"`
	Inserts   uint64 `json:"inserts"`
	Updates   uint64 `json:"updates"`
	Deletes   uint64 `json:"deletes"`
	Truncates uint64 `json:"truncates"`
	// Undecodable changes each flushed the cache; Flushes counts every flush.
	Undecodable uint64 `json:"undecodable"`
	Flushes     uint64 `json:"flushes"`
	// ForeignHeartbeats were ignored: messages with the heartbeat prefix
	// this process did not sign.
	ForeignHeartbeats uint64 `json:"foreignHeartbeats"`
}

// Build computes the health document from a status snapshot.
//
// An active process is unhealthy while it is not streaming (Postgres down,
// publication missing, slot trouble) or while the sessions table is not fully
// published (the watermark stands still), degraded while Redis fails or the
// lag is above threshold, healthy otherwise. A standby is healthy while it can
// reach Postgres to contend for the lock.
func Build(s cdc.Status, threshold time.Duration, now time.Time) Health {
	h := Health{Role: string(s.Role), Slot: s.Slot, Publication: s.Publication, Table: s.Table,
		Lag:               Lag{Bytes: max(s.LagBytes, 0), Seconds: s.LagSeconds(now)},
		ConfirmedFlushLSN: s.ConfirmedFlush.String(), ServerWALLSN: s.ServerWAL.String(),
		Events: Events{Applied: s.Applied, Inserts: s.Inserts, Updates: s.Updates, Deletes: s.Deletes, Truncates: s.Truncates,
			Undecodable: s.Undecodable, Flushes: s.Flushes, ForeignHeartbeats: s.ForeignHeartbeats},
		ClockOffsetSeconds: s.ClockOffset.Seconds(),
		WAL:                WAL{SlotStatus: s.WALStatus, KeepSizeLimited: !s.KeepUnlimited},
	}
	if s.SafeWALSize >= 0 {
		v := s.SafeWALSize
		h.WAL.SafeBytes = &v
	}
	if s.ForeignHeartbeats > 0 {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%d heartbeat messages this process did not send were ignored (another invalidator on this database, or a role emitting them with pg_logical_emit_message; `validator migrate -revoke-public-emit-message` stops other roles)", s.ForeignHeartbeats))
	}
	if off := s.ClockOffset; off > time.Second || off < -time.Second {
		h.Warnings = append(h.Warnings, fmt.Sprintf("this host's clock is %.1fs off Redis's: staleness is measured on Redis's clock, so the bound holds, but fix NTP on the hosts", -off.Seconds()))
	}
	if s.SyncState == "sync" || s.SyncState == "quorum" || s.SyncState == "potential" {
		h.Warnings = append(h.Warnings, "this invalidator is a "+s.SyncState+" synchronous standby (it matches synchronous_standby_names): "+
			"commits wait for it or may; it copes, but remove application_name sessionguard-invalidator from synchronous_standby_names")
	}
	if s.KeepUnlimited {
		h.Warnings = append(h.Warnings, "max_slot_wal_keep_size is unlimited: a stuck slot keeps WAL until the disk is full; set it (ALTER SYSTEM SET max_slot_wal_keep_size = '10GB')")
	}
	if s.WALStatus != "" && s.WALStatus != "reserved" {
		h.Warnings = append(h.Warnings, "slot wal_status is "+s.WALStatus+": the slot is past max_wal_size and may be lost (then the cache is flushed and the slot recreated)")
	}
	if s.Role == cdc.RoleStandby {
		h.Lag.Seconds = 0
	}
	if !s.LastEventAt.IsZero() {
		v := s.LastEventAt.UTC().Format(time.RFC3339Nano)
		h.LastEventAt = &v
	}
	if !s.Watermark.IsZero() {
		v := s.Watermark.UTC().Format(time.RFC3339Nano)
		h.Watermark = &v
	}
	if s.LastError != "" {
		h.Errors = append(h.Errors, s.LastError)
	}
	h.Errors = append(h.Errors, s.SourceProblems...)
	switch {
	case s.Role == cdc.RoleStandby && s.LastError == "":
		h.Status = "healthy"
	case s.Role == cdc.RoleStandby:
		h.Status = "unhealthy"
	case !s.Streaming:
		h.Status = "unhealthy"
	case len(s.SourceProblems) > 0:
		// The watermark stands still: validators go to Postgres.
		h.Status = "unhealthy"
	case s.RedisFailing:
		h.Status = "degraded"
		h.Errors = append(h.Errors, "redis calls failing: effects are retried, nothing is acknowledged")
	case h.Lag.Seconds > threshold.Seconds():
		h.Status = "degraded"
		h.Errors = append(h.Errors, "lag above threshold")
	default:
		h.Status = "healthy"
	}
	return h
}

// Ready reports what /readyz answers.
func Ready(s cdc.Status, threshold time.Duration, now time.Time) bool {
	if s.Role == cdc.RoleStandby {
		return true
	}
	return s.Streaming && !s.RedisFailing && len(s.SourceProblems) == 0 && s.LagSeconds(now) <= threshold.Seconds()
}

// Handler returns the invalidator's HTTP handler.
func Handler(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if Ready(o.Source.Status(), o.LagThreshold, o.Now()) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not ready"})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		h := Build(o.Source.Status(), o.LagThreshold, o.Now())
		code := http.StatusOK
		if h.Status == "unhealthy" {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
