package cache

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
)

func TestEntryEncodingRoundTrip(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	revoked := at("2026-01-02T00:00:00.000001Z")
	for _, tc := range []struct {
		name    string
		s       session.Session
		version string
	}{
		{"own table", session.Session{ID: "a", UserID: "u", CreatedAt: at("2026-01-01T00:00:00Z"), ExpiresAt: at("2026-02-01T00:00:00Z")}, "1|"},
		{"own table revoked", session.Session{ID: "a", UserID: "u", CreatedAt: at("2026-01-01T00:00:00Z"), ExpiresAt: at("2026-02-01T00:00:00Z"), RevokedAt: &revoked}, "1|"},
		{"zero created", session.Session{ID: "a", UserID: "u", ExpiresAt: at("2026-02-01T00:00:00Z")}, "1|"},
		{"supabase, no not_after", session.Session{ID: "a", UserID: "u", CreatedAt: at("2026-01-01T00:00:00Z"), AAL: "aal1"}, "2|"},
		{"supabase refreshed", session.Session{ID: "a", UserID: "u", CreatedAt: at("2026-01-01T00:00:00Z"),
			ExpiresAt: at("2026-03-01T00:00:00Z"), LastActive: at("2026-01-05T10:00:00.5Z"), AAL: "aal2"}, "2|"},
		{"separators in text", session.Session{ID: "a|b%7C", UserID: "%|", CreatedAt: at("2026-01-01T00:00:00Z"), AAL: "x|y"}, "2|"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := encodeEntry(&tc.s)
			if !strings.HasPrefix(v, tc.version) {
				t.Fatalf("encoded %q, want version %q", v, tc.version)
			}
			e, err := decodeEntry(v)
			if err != nil {
				t.Fatalf("decode %q: %v", v, err)
			}
			got := e.Session
			if got.ID != tc.s.ID || got.UserID != tc.s.UserID || got.AAL != tc.s.AAL || !got.CreatedAt.Equal(tc.s.CreatedAt) ||
				!got.ExpiresAt.Equal(tc.s.ExpiresAt) || !got.LastActive.Equal(tc.s.LastActive) ||
				(got.RevokedAt == nil) != (tc.s.RevokedAt == nil) || (got.RevokedAt != nil && !got.RevokedAt.Equal(*tc.s.RevokedAt)) {
				t.Fatalf("round trip of %q: got %+v, want %+v", v, got, tc.s)
			}
		})
	}
	for _, bad := range []string{"2|a|u|1|||", "2|a|u||||1|", "1|a|u|1||", "3|a|u|1|2|3|4|x", "2|a|u|x|||||"} {
		if _, err := decodeEntry(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}
