package cdc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// macd signs an arbitrary body the way sign does, to build heartbeats that
// carry a valid MAC but a body verify must still refuse.
func macd(key []byte, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return body + "|" + hex.EncodeToString(m.Sum(nil))
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, h := range []heartbeat{
		{At: time.UnixMilli(1_780_000_000_123), Source: "7412345678901234567/16384/16390", Catalog: "c0ffee",
			Owed: "gen-abc", Xmax: 4294967310, InProgress: 3, Recheck: 4294967300, Open: 1},
		{At: time.UnixMilli(1), Source: "", Owed: ""},
	} {
		got, ok := verify(key, []byte(sign(key, h)))
		if !ok || got != h {
			t.Fatalf("verify(sign(%+v)) = %+v, %v", h, got, ok)
		}
		if v := got.vouch(); !v.At.Equal(h.At) || v.Source != h.Source || v.Catalog != h.Catalog ||
			v.Owed != h.Owed || v.Xmax != h.Xmax || v.InProgress != h.InProgress || v.Recheck != h.Recheck || v.Open != h.Open {
			t.Fatalf("vouch %+v", v)
		}
	}
	// Sub-millisecond time is truncated, not refused.
	at := time.UnixMilli(1_780_000_000_123).Add(456 * time.Microsecond)
	if got, ok := verify(key, []byte(sign(key, heartbeat{At: at, Source: "s"}))); !ok || !got.At.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("sub-millisecond: %+v %v", got, ok)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	h := heartbeat{At: time.UnixMilli(1_780_000_000_123), Source: "7412345678901234567/16384/16390", Owed: ""}
	good := sign(key, h)
	macAt := strings.LastIndexByte(good, '|')
	cases := []struct {
		name    string
		content string
	}{
		{"another key", sign(other, h)},
		{"time moved forward, old mac", strings.Replace(good, "|1780000000123|", "|1780000999123|", 1)},
		{"source changed, old mac", strings.Replace(good, "/16390|", "/16391|", 1)},
		{"mac truncated", good[:len(good)-1]},
		{"body truncated", good[1:]},
		{"mac only", good[macAt:]},
		{"empty", ""},
		{"over-long", macd(key, "v1|1780000000123|"+strings.Repeat("s", maxHeartbeatContent)+"|")},
		{"missing open", macd(key, "v1|1780000000123|src|cat||1|2|3")},
		{"missing snapshot bounds", macd(key, "v1|1780000000123|src|cat|")},
		{"missing source and the rest", macd(key, "v1|1780000000123")},
		{"extra field", macd(key, "v1|1780000000123|src|cat||1|2|3|4|x")},
		{"xmax not a number", macd(key, "v1|1780000000123|src|cat||x|2|3|4")},
		{"in progress negative", macd(key, "v1|1780000000123|src|cat||1|-2|3|4")},
		{"time not a number", macd(key, "v1|x|src|cat||1|2|3|4")},
		{"time zero", macd(key, "v1|0|src|cat||1|2|3|4")},
		{"time negative", macd(key, "v1|-5|src|cat||1|2|3|4")},
		{"version 2", macd(key, "v2|1780000000123|src|")},
		{"no version", macd(key, "|1780000000123|src|")},
		{"forged: bare number (issue 6)", "99999999999999"},
		{"forged: x (issue 6)", "x"},
		{"forged: v1 body without mac", "v1|99999999999999|src|cat||1|2|3|4"},
		{"mac upper-case hex", good[:macAt+1] + strings.ToUpper(good[macAt+1:])},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, ok := verify(key, []byte(tc.content)); ok {
				t.Fatalf("verify(%q) accepted: %+v", tc.content, got)
			}
		})
	}
	if len(macd(key, "v1|1780000000123|"+strings.Repeat("s", maxHeartbeatContent)+"|")) <= maxHeartbeatContent {
		t.Fatal("over-long case is not over-long")
	}
}
