package invalidator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cdc"
)

type fixed cdc.Status

func (f fixed) Status() cdc.Status { return cdc.Status(f) }

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	fresh := now.Add(-300 * time.Millisecond)
	cases := []struct {
		name   string
		s      cdc.Status
		status string
		code   int
		ready  bool
	}{
		{"active streaming", cdc.Status{Role: cdc.RoleActive, Streaming: true, Watermark: fresh}, "healthy", 200, true},
		{"standby", cdc.Status{Role: cdc.RoleStandby}, "healthy", 200, true},
		{"standby without postgres", cdc.Status{Role: cdc.RoleStandby, LastError: "connect"}, "unhealthy", 503, true},
		{"active not streaming", cdc.Status{Role: cdc.RoleActive, LastError: "publication missing"}, "unhealthy", 503, false},
		{"redis failing", cdc.Status{Role: cdc.RoleActive, Streaming: true, RedisFailing: true, Watermark: fresh}, "degraded", 200, false},
		{"lagging", cdc.Status{Role: cdc.RoleActive, Streaming: true, Watermark: now.Add(-time.Minute)}, "degraded", 200, false},
		{"table not fully published", cdc.Status{Role: cdc.RoleActive, Streaming: true, Watermark: fresh,
			SourceProblems: []string{"publication does not publish sessions"}}, "unhealthy", 503, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(Options{Source: fixed(tc.s), LagThreshold: 10 * time.Second, Now: func() time.Time { return now }})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || doc["status"] != tc.status {
				t.Fatalf("health %d %v, want %d %s", rec.Code, doc["status"], tc.code, tc.status)
			}
			for _, k := range []string{"role", "slot", "publication", "lag", "confirmedFlushLsn", "serverWalLsn", "lastEventAt", "watermark", "events", "wal"} {
				if _, ok := doc[k]; !ok {
					t.Fatalf("health lacks %q: %s", k, rec.Body)
				}
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if (rec.Code == 200) != tc.ready {
				t.Fatalf("readyz %d, want ready=%v", rec.Code, tc.ready)
			}
		})
	}
}
