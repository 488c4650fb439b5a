package validation

import (
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// Interleavings the notice channel cannot be made to produce on demand:
// a drop arriving between a validator's Redis read and its store, a missed
// notice, a notice before the subscription.
func TestNearOrdering(t *testing.T) {
	h := session.HashToken("tok")
	entry := &cache.Entry{Negative: true}
	wm := cache.Notice{Kind: cache.NoticeWatermark, Watermark: cache.Watermark{At: time.Now(), Source: "db"}}
	held := func(n *near) bool { _, _, _, ok := n.get(h); return ok }

	n := newNear(10, time.Minute, time.Minute, nil)
	n.notice(cache.Notice{Seq: 1, Kind: cache.NoticeFlush})
	if tk := n.begin(); tk.ok {
		t.Fatal("a ticket before the subscription allows a store")
	}
	n.subscribed()
	wm.Seq = 1
	n.notice(wm)
	n.put(n.begin(), h, entry)
	if !held(n) {
		t.Fatal("entry not held after a quiet read")
	}

	// A drop between the read and the store: the read may predate it.
	n.notice(cache.Notice{Seq: 2, Kind: cache.NoticeDrop, Hashes: []session.Hash{h}})
	if held(n) {
		t.Fatal("dropped entry still held")
	}
	tk := n.begin()
	n.notice(cache.Notice{Seq: 3, Kind: cache.NoticeDrop, Hashes: []session.Hash{session.HashToken("other")}})
	n.put(tk, h, entry)
	if held(n) {
		t.Fatal("entry stored though a drop came between its read and its store")
	}
	// A watermark in between does not void the read.
	tk = n.begin()
	wm.Seq = 4
	n.notice(wm)
	n.put(tk, h, entry)
	if !held(n) {
		t.Fatal("entry refused though only a watermark came in between")
	}

	// A gap: everything goes, the watermark too, until the next one.
	n.notice(cache.Notice{Seq: 6, Kind: cache.NoticeFlush})
	if held(n) || n.wm.Load() != nil {
		t.Fatal("a missed notice left entries or the watermark")
	}
	n.put(n.begin(), h, entry)
	wm.Seq = 7
	n.notice(wm)
	if !held(n) {
		t.Fatal("not serving again after the gap")
	}
	// A lost subscription: emptied, and no store until subscribed again.
	tk = n.begin()
	n.lost("disconnected")
	n.put(tk, h, entry)
	n.put(n.begin(), h, entry)
	if held(n) {
		t.Fatal("entry held without a subscription")
	}
}
