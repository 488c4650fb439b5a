package validation

import (
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// Interleavings the notice channel cannot be made to produce on demand: a
// drop arriving between a validator's Redis read and its store, a read from
// a Redis behind in its numbering, a missed notice, a notice before the
// subscription, an entry near its end in Redis.
func TestNearOrdering(t *testing.T) {
	h := session.HashToken("tok")
	read := func(seq uint64, ttl time.Duration) cache.Lookup {
		return cache.Lookup{Hash: h, Entry: &cache.Entry{Negative: true}, Seq: seq, EntryTTL: ttl, Now: time.Now()}
	}
	wm := func(seq uint64) cache.Notice {
		return cache.Notice{Seq: seq, Kind: cache.NoticeWatermark, Watermark: cache.Watermark{At: time.Now(), Source: "db"}}
	}
	held := func(n *near) bool { _, _, _, ok := n.get(h); return ok }

	n := newNear(10, time.Minute, time.Minute, 1, func(session.Hash) int { return 0 }, nil)
	n.looked(read(0, 0), time.Now())
	n.notice(0, cache.Notice{Seq: 1, Kind: cache.NoticeFlush})
	if tk := n.begin(h); tk.ok {
		t.Fatal("a ticket before the subscription allows a store")
	}
	n.subscribed(0)
	n.notice(0, wm(1))
	n.put(n.begin(h), read(1, time.Minute))
	if !held(n) {
		t.Fatal("entry not held after a quiet read")
	}

	n.notice(0, cache.Notice{Seq: 2, Kind: cache.NoticeDrop, Hashes: []session.Hash{h}})
	if held(n) {
		t.Fatal("dropped entry still held")
	}
	// A drop the Redis read had not seen (its numbering stops before it):
	// the read may predate it, or come from a replica behind.
	tk := n.begin(h)
	n.notice(0, cache.Notice{Seq: 3, Kind: cache.NoticeDrop, Hashes: []session.Hash{session.HashToken("other")}})
	n.put(tk, read(2, time.Minute))
	if held(n) {
		t.Fatal("entry stored though a drop came after its read")
	}
	// A read that had seen it, and a watermark in between: stored.
	tk = n.begin(h)
	n.notice(0, wm(4))
	n.put(tk, read(3, time.Minute))
	if !held(n) {
		t.Fatal("entry refused though its read had seen every drop")
	}
	// No longer than the Redis entry lives.
	n.notice(0, cache.Notice{Seq: 5, Kind: cache.NoticeFlush})
	n.put(n.begin(h), read(5, 30*time.Millisecond))
	n.notice(0, wm(6))
	if !held(n) {
		t.Fatal("entry not held")
	}
	time.Sleep(80 * time.Millisecond)
	if held(n) {
		t.Fatal("near copy outlived its Redis entry")
	}

	// A gap: everything goes, the watermark too, until the next one.
	n.put(n.begin(h), read(6, time.Minute))
	n.notice(0, cache.Notice{Seq: 8, Kind: cache.NoticeFlush})
	if held(n) || n.shards[0].wm.Load() != nil {
		t.Fatal("a missed notice left entries or the watermark")
	}
	n.put(n.begin(h), read(8, time.Minute))
	n.notice(0, wm(9))
	if !held(n) {
		t.Fatal("not serving again after the gap")
	}
	// A lost subscription: emptied, and no store until subscribed again.
	tk = n.begin(h)
	n.lost("disconnected")
	n.put(tk, read(9, time.Minute))
	n.put(n.begin(h), read(9, time.Minute))
	if held(n) {
		t.Fatal("entry held without a subscription")
	}
}

// Redis's clock is estimated from a lookup's TIME plus the time since the
// lookup was sent: a reply delayed on its way back cannot make the estimate
// early, which would stretch the staleness guard.
func TestNearClockNeverBehind(t *testing.T) {
	n := newNear(10, time.Minute, time.Minute, 1, func(session.Hash) int { return 0 }, nil)
	sent := time.Now()
	redisTime := time.Now() // TIME ran right away ...
	time.Sleep(50 * time.Millisecond)
	n.looked(cache.Lookup{Now: redisTime}, sent) // ... and the reply took 50ms back
	n.subscribed(0)
	n.notice(0, cache.Notice{Seq: 1, Kind: cache.NoticeWatermark, Watermark: cache.Watermark{At: redisTime, Source: "db"}})
	h := session.HashToken("x")
	n.put(n.begin(h), cache.Lookup{Hash: h, Entry: &cache.Entry{Negative: true}, Seq: 1, EntryTTL: time.Minute})
	_, _, est, ok := n.get(h)
	if !ok {
		t.Fatal("not held")
	}
	if behind := time.Since(redisTime) - est.Sub(redisTime); behind > time.Millisecond {
		t.Fatalf("estimate of Redis's clock %v behind it after a slow reply", behind)
	}
}
