package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// Every script that changes what may be served publishes it, in the order
// the scripts ran, numbered without gaps: apply (its drops, by id too),
// flush, and the watermark (after the flush it owed).
func TestNoticesFollowTheScripts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	if _, err := c.FlushIfServerChanged(ctx); err != nil {
		t.Fatal(err)
	}
	ps := c.Notices(ctx)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription
		t.Fatal(err)
	}
	a, b, id := session.HashToken("a"), session.HashToken("b"), session.HashToken("row")
	l, _ := c.Lookup(ctx, b)
	if ok, _ := c.FillIndexed(ctx, l, validSession(time.Hour), id); !ok {
		t.Fatal("fill refused")
	}
	// A hit says which notice its Redis had published last, and how long
	// the entry has left.
	hit, err := c.Lookup(ctx, b)
	if err != nil || hit.Entry == nil {
		t.Fatalf("hit = %+v, %v", hit, err)
	}
	if seq, _ := rdb.Get(ctx, c.Prefix()+":invseq").Uint64(); hit.Seq != seq || hit.EntryTTL <= 0 || hit.EntryTTL > cache.DefaultTTL {
		t.Fatalf("hit seq %d (invseq %d), entry ttl %v", hit.Seq, seq, hit.EntryTTL)
	}
	if _, err := c.Apply(ctx, []cache.Op{cache.Revoke(a), cache.RevokeByID(id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	wm := cache.Watermark{At: time.Now().Truncate(time.Millisecond), Source: "db"}
	if _, err := c.SetWatermark(ctx, wm); err != nil {
		t.Fatal(err)
	}
	// A watermark on another server: the flush it owes comes first.
	if err := rdb.Set(ctx, c.Prefix()+":srv", "another", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetWatermark(ctx, wm); err != nil {
		t.Fatal(err)
	}
	want := []cache.NoticeKind{cache.NoticeDrop, cache.NoticeFlush, cache.NoticeWatermark, cache.NoticeFlush, cache.NoticeWatermark}
	var last uint64
	for i, kind := range want {
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("notice %d: %v", i, err)
		}
		n, err := cache.ParseNotice(msg.(*redis.Message).Payload)
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != kind || (last != 0 && n.Seq != last+1) {
			t.Fatalf("notice %d = %+v after seq %d; want kind %c, the next number", i, n, last, kind)
		}
		last = n.Seq
		switch n.Kind {
		case cache.NoticeDrop:
			if len(n.Hashes) != 2 || n.Hashes[0] != a || n.Hashes[1] != b {
				t.Fatalf("drop notice hashes %v, want the revoked one and the row's entry", n.Hashes)
			}
		case cache.NoticeWatermark:
			if !n.Watermark.At.Equal(wm.At) || n.Watermark.Source != "db" {
				t.Fatalf("watermark notice %+v, want %+v", n.Watermark, wm)
			}
		}
	}
}

func TestParseNoticeRefusesMalformed(t *testing.T) {
	t.Parallel()
	for _, msg := range []string{"", "1", "1|d", "0|f|", "x|f|", "1|z|", "1|d|", "1|d|abc", "1|w|", "1|w|soon|db", "-1|f|", "1|ff|"} {
		if n, err := cache.ParseNotice(msg); err == nil {
			t.Errorf("ParseNotice(%q) = %+v, want an error", msg, n)
		}
	}
	if n, err := cache.ParseNotice("7|f|"); err != nil || n.Seq != 7 || n.Kind != cache.NoticeFlush {
		t.Errorf("ParseNotice(7|f|) = %+v, %v", n, err)
	}
}
