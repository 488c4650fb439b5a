package cache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// newCache returns a cache whose lookups start a namespace when there is none
// (a validator without the staleness guard), on a Redis of its own.
func newCache(t *testing.T, o cache.Options) (*cache.Cache, *redis.Client) {
	t.Helper()
	rdb := testenv.RedisClient(t, testenv.NewRedis(t))
	o.StartsNamespace = true
	return cache.New(rdb, o), rdb
}

// A validator under the staleness guard never writes the generation: in no
// namespace its lookup is a miss without a lease, until the invalidator's
// heartbeat starts one. Its Redis user can then be denied that key.
func TestLookupLeavesNamespaceToInvalidator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := testenv.RedisClient(t, testenv.NewRedis(t))
	validator, invalidator := cache.New(rdb, cache.Options{}), cache.New(rdb, cache.Options{})
	h := session.HashToken("no-namespace")
	l, err := validator.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if l.Gen != "" || l.Lease != "" || l.Entry != nil {
		t.Fatalf("lookup in no namespace = gen %q lease %q entry %v; want a miss without a lease", l.Gen, l.Lease, l.Entry)
	}
	if n, err := rdb.Exists(ctx, validator.Prefix()+":gen").Result(); err != nil || n != 0 {
		t.Fatalf("generation key exists=%d (%v) after a guarded lookup; want none", n, err)
	}
	if ok, err := validator.Fill(ctx, l, validSession(time.Hour)); ok || err != nil {
		t.Fatalf("fill in no namespace = %v, %v; want false, nil", ok, err)
	}
	if _, err := invalidator.SetWatermark(ctx, cache.Watermark{At: time.Now(), Source: "db"}); err != nil {
		t.Fatal(err)
	}
	l, err = validator.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if l.Gen == "" || l.Lease == "" {
		t.Fatalf("lookup after the heartbeat = gen %q lease %q; want the invalidator's namespace and a lease", l.Gen, l.Lease)
	}
	if ok, err := validator.Fill(ctx, l, validSession(time.Hour)); !ok || err != nil {
		t.Fatalf("fill = %v, %v; want true, nil", ok, err)
	}
}

func validSession(expiresIn time.Duration) *session.Session {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &session.Session{
		ID:        "6f1c8b1e-2a55-4b55-9f0c-5d5b0b3f4a11",
		UserID:    "0b7c1f2e-1111-4a2b-8c3d-222233334444",
		CreatedAt: now,
		ExpiresAt: now.Add(expiresIn),
	}
}

func TestMissFillHit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	h := session.HashToken("tok-1")

	l, err := c.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if l.Entry != nil || l.Lease == "" {
		t.Fatalf("first lookup: entry=%v lease=%q, want miss with a lease", l.Entry, l.Lease)
	}
	// A second concurrent miss gets no lease: only one filler at a time.
	l2, err := c.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Entry != nil || l2.Lease != "" {
		t.Fatalf("second lookup: entry=%v lease=%q, want miss without lease", l2.Entry, l2.Lease)
	}
	if ok, err := c.Fill(ctx, l2, validSession(time.Hour)); ok || err != nil {
		t.Fatalf("fill without lease = %v, %v; want false, nil", ok, err)
	}
	s := validSession(time.Hour)
	if ok, err := c.Fill(ctx, l, s); !ok || err != nil {
		t.Fatalf("fill = %v, %v; want true, nil", ok, err)
	}
	l, err = c.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if l.Entry == nil || l.Entry.Negative {
		t.Fatalf("after fill: entry=%+v, want positive", l.Entry)
	}
	got := l.Entry.Session
	if got.ID != s.ID || got.UserID != s.UserID || !got.ExpiresAt.Equal(s.ExpiresAt) || !got.CreatedAt.Equal(s.CreatedAt) || got.RevokedAt != nil {
		t.Fatalf("round trip: got %+v, want %+v", got, *s)
	}
}

func TestEntryNeverOutlivesSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{TTL: time.Hour})
	h := session.HashToken("short")
	l, _ := c.Lookup(ctx, h)
	if ok, err := c.Fill(ctx, l, validSession(1500*time.Millisecond)); !ok || err != nil {
		t.Fatalf("fill: %v %v", ok, err)
	}
	pttl, err := rdb.PTTL(ctx, c.EntryKey(l.Gen, h)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 0 || pttl > 1500*time.Millisecond {
		t.Fatalf("entry TTL %v, want at most the 1.5s left to expires_at (TTL option is 1h)", pttl)
	}
	// Long sessions are capped by the TTL option.
	h2 := session.HashToken("long")
	l, _ = c.Lookup(ctx, h2)
	if ok, _ := c.Fill(ctx, l, validSession(48*time.Hour)); !ok {
		t.Fatal("fill refused")
	}
	pttl, _ = rdb.PTTL(ctx, c.EntryKey(l.Gen, h2)).Result()
	if pttl > time.Hour || pttl < 59*time.Minute {
		t.Fatalf("entry TTL %v, want about 1h", pttl)
	}
}

func TestNegativeEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{NegativeTTL: 3 * time.Second})
	revoked := validSession(time.Hour)
	now := time.Now()
	revoked.RevokedAt = &now
	for name, s := range map[string]*session.Session{"unknown": nil, "revoked": revoked, "expired": validSession(-time.Minute)} {
		h := session.HashToken(name)
		l, _ := c.Lookup(ctx, h)
		if ok, err := c.Fill(ctx, l, s); !ok || err != nil {
			t.Fatalf("%s: fill %v %v", name, ok, err)
		}
		l, _ = c.Lookup(ctx, h)
		if l.Entry == nil || !l.Entry.Negative {
			t.Fatalf("%s: entry %+v, want negative", name, l.Entry)
		}
		if pttl, _ := rdb.PTTL(ctx, c.EntryKey(l.Gen, h)).Result(); pttl > 3*time.Second || pttl <= 0 {
			t.Fatalf("%s: negative TTL %v, want <= 3s", name, pttl)
		}
	}
}

// TestFillRaceWithInvalidation forces the interleaving of guarantee 4: a
// validator looks up (miss), reads Postgres while the session is valid, a
// revocation is committed and invalidated, then the validator's fill
// arrives. The fill must be refused and the cache must not hold the session.
func TestFillRaceWithInvalidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	h := session.HashToken("raced")

	l, err := c.Lookup(ctx, h) // 1. miss, lease granted
	if err != nil || l.Lease == "" {
		t.Fatalf("lookup: %+v %v", l, err)
	}
	stale := validSession(time.Hour)             // 2. what Postgres said before the revocation
	if err := c.Invalidate(ctx, h); err != nil { // 3. revocation's invalidation
		t.Fatal(err)
	}
	ok, err := c.Fill(ctx, l, stale) // 4. the late fill
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Fatal("a fill that raced an invalidation landed")
	}
	l, _ = c.Lookup(ctx, h)
	if l.Entry != nil {
		t.Fatalf("cache holds %+v after invalidation", l.Entry)
	}
}

func TestFillRaceWithFlush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	h := session.HashToken("raced-truncate")
	l, _ := c.Lookup(ctx, h)
	if _, err := c.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Fill(ctx, l, validSession(time.Hour)); ok {
		t.Fatal("a fill from before a flush landed")
	}
	l2, _ := c.Lookup(ctx, h)
	if l2.Entry != nil || l2.Gen == l.Gen {
		t.Fatalf("after flush: entry=%v gen %s -> %s", l2.Entry, l.Gen, l2.Gen)
	}
}

func TestFlushHidesEveryEntryAndPurgeRemovesThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	var hashes []session.Hash
	for i := 0; i < 50; i++ {
		h := session.HashToken("flush-" + strings.Repeat("x", i))
		hashes = append(hashes, h)
		l, _ := c.Lookup(ctx, h)
		if ok, _ := c.Fill(ctx, l, validSession(time.Hour)); !ok {
			t.Fatal("fill refused")
		}
	}
	old, err := c.Flush(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes {
		l, _ := c.Lookup(ctx, h)
		if l.Entry != nil {
			t.Fatal("entry visible after flush")
		}
	}
	n, err := c.PurgeGeneration(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Fatalf("purged %d keys, want 50", n)
	}
	left, _ := rdb.Keys(ctx, "sg:"+old+":*").Result()
	if len(left) != 0 {
		t.Fatalf("old generation keys left: %v", left)
	}
}

func TestApplyUpdatesInPlaceButNeverCreates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	cached, absent, negative := session.HashToken("cached"), session.HashToken("absent"), session.HashToken("negative")
	l, _ := c.Lookup(ctx, cached)
	c.Fill(ctx, l, validSession(time.Hour))
	l, _ = c.Lookup(ctx, negative)
	c.Fill(ctx, l, nil)
	pending, _ := c.Lookup(ctx, absent) // a fill in flight for "absent"

	updated := validSession(30 * time.Minute)
	updated.UserID = "99999999-9999-4999-8999-999999999999"
	n, err := c.Apply(ctx, []cache.Op{
		{Hash: cached, Session: updated},
		{Hash: absent, Session: updated},
		{Hash: negative, Session: updated},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("changed %d entries, want 2 (cached updated, negative dropped)", n)
	}
	l, _ = c.Lookup(ctx, cached)
	if l.Entry == nil || l.Entry.Session.UserID != updated.UserID || !l.Entry.Session.ExpiresAt.Equal(updated.ExpiresAt) {
		t.Fatalf("cached entry not updated in place: %+v", l.Entry)
	}
	if ex, _ := rdb.Exists(ctx, c.EntryKey(l.Gen, absent)).Result(); ex != 0 {
		t.Fatal("update created an entry")
	}
	if ok, _ := c.Fill(ctx, pending, validSession(time.Hour)); ok {
		t.Fatal("update did not void the lease of a fill in flight")
	}
	l, _ = c.Lookup(ctx, negative)
	if l.Entry != nil {
		t.Fatalf("negative entry survived an update: %+v", l.Entry)
	}
	// An update that makes the session invalid drops the entry.
	expired := validSession(-time.Second)
	if _, err := c.Apply(ctx, []cache.Op{{Hash: cached, Session: expired}}); err != nil {
		t.Fatal(err)
	}
	l, _ = c.Lookup(ctx, cached)
	if l.Entry != nil {
		t.Fatalf("expired session still cached: %+v", l.Entry)
	}
}

func TestApplyLargeBatchAndScriptReload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	var ops []cache.Op
	for i := 0; i < 2000; i++ {
		h := session.HashToken("bulk-" + time.Duration(i).String())
		l, _ := c.Lookup(ctx, h)
		c.Fill(ctx, l, validSession(time.Hour))
		ops = append(ops, cache.Drop(h))
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // forces NOSCRIPT on the pipeline
		t.Fatal(err)
	}
	n, err := c.Apply(ctx, ops)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2000 {
		t.Fatalf("dropped %d, want 2000", n)
	}
	if n, _ := c.Apply(ctx, ops); n != 0 {
		t.Fatalf("replay changed %d entries, want 0 (idempotent)", n)
	}
}

func TestWatermarkRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	if wm, err := c.Watermark(ctx); err != nil || !wm.IsZero() {
		t.Fatalf("initial watermark %v %v, want zero", wm, err)
	}
	at := time.UnixMilli(time.Now().UnixMilli())
	w := cache.Watermark{At: at, Source: "7123/16384/16390", Catalog: "16400:750/16401:751"}
	if _, err := c.SetWatermark(ctx, w); err != nil {
		t.Fatal(err)
	}
	l, err := c.Lookup(ctx, session.HashToken("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !l.Watermark.At.Equal(at) || l.Watermark != w {
		t.Fatalf("lookup watermark %+v, want %+v", l.Watermark, w)
	}
	// Now is Redis's clock: this test's clock and the server's are one.
	if d := time.Since(l.Now); d < -time.Second || d > time.Second {
		t.Fatalf("lookup Now %v is %v from this host's clock", l.Now, d)
	}
}

// TestLostGenerationNeverComesBack: deleting the generation key (an
// eviction, a stray DEL) must not bring back any earlier namespace: the next
// lookup starts a new, empty one.
func TestLostGenerationNeverComesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	h := session.HashToken("lost-gen")
	var gens []string
	for i := 0; i < 3; i++ {
		l, err := c.Lookup(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if l.Entry != nil {
			t.Fatalf("round %d: entry of an earlier namespace served after the generation key was lost", i)
		}
		if ok, _ := c.Fill(ctx, l, validSession(time.Hour)); !ok {
			t.Fatalf("round %d: fill refused", i)
		}
		gens = append(gens, l.Gen)
		if i == 1 {
			if _, err := c.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := rdb.Del(ctx, c.Prefix()+":gen").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if gens[0] == gens[1] || gens[1] == gens[2] || gens[0] == gens[2] {
		t.Fatalf("a generation was reused: %v", gens)
	}
}

// TestSetWatermarkStartsNamespaceOnNewSource: a watermark that vouches for
// another source than the stored one moves to a new namespace first; so
// does one written while the generation key is missing.
func TestSetWatermarkStartsNamespaceOnNewSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	if _, err := c.FlushIfServerChanged(ctx); err != nil { // as the invalidator starts
		t.Fatal(err)
	}
	h := session.HashToken("src")
	l, _ := c.Lookup(ctx, h)
	if ok, _ := c.Fill(ctx, l, validSession(time.Hour)); !ok {
		t.Fatal("fill refused")
	}
	for i, tc := range []struct {
		src, reason string
		dropGen     bool
	}{
		{"1/2/3", "", false},               // first watermark: nothing to compare
		{"1/2/3", "", false},               // same source: keep the namespace
		{"1/2/4", "source_changed", false}, // table re-created
		{"1/2/4", "generation_lost", true},
	} {
		if tc.dropGen {
			rdb.Del(ctx, c.Prefix()+":gen")
		}
		before, _ := c.Generation(ctx)
		r, err := c.SetWatermark(ctx, cache.Watermark{At: time.Now(), Source: tc.src})
		if err != nil {
			t.Fatal(err)
		}
		after, _ := c.Generation(ctx)
		if r.Reason != tc.reason {
			t.Fatalf("step %d: reset %+v, want reason %q", i, r, tc.reason)
		}
		if (tc.reason == "") != (before == after) || after == "" {
			t.Fatalf("step %d: generation %q -> %q with reason %q", i, before, after, r.Reason)
		}
		if tc.reason == "source_changed" || tc.reason == "catalog_changed" {
			if r.Old != before {
				t.Fatalf("old generation %q, want %q", r.Old, before)
			}
			l, _ := c.Lookup(ctx, h)
			if l.Entry != nil {
				t.Fatalf("step %d: entry checked before the %s still served", i, tc.reason)
			}
			if ok, _ := c.Fill(ctx, l, validSession(time.Hour)); !ok { // for the next step
				t.Fatal("fill refused")
			}
		}
	}
}

func TestParseWatermarkRejectsNonsense(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"", "x", "-1|a", "99999999999999999999|a", "253402300800000|a"} {
		if _, err := cache.ParseWatermark(v); err == nil {
			t.Errorf("ParseWatermark(%q) accepted", v)
		}
	}
	w, err := cache.ParseWatermark("1700000000000")
	if err != nil || w.Source != "" || w.At.UnixMilli() != 1700000000000 {
		t.Fatalf("legacy watermark: %+v %v", w, err)
	}
}

func TestKeysAndValuesHoldNoToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	token := "super-secret-token-value"
	h := session.HashToken(token)
	l, _ := c.Lookup(ctx, h)
	c.Fill(ctx, l, validSession(time.Hour))
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		v, _ := rdb.Get(ctx, k).Result()
		if strings.Contains(k, token) || strings.Contains(v, token) {
			t.Fatalf("token found in redis: %s = %s", k, v)
		}
	}
}

func TestInfoAndProbe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	si, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.Version == "" || si.UsedMemory == "" {
		t.Fatalf("info: %+v", si)
	}
	p, err := c.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Ping <= 0 || p.Set <= 0 || p.Get <= 0 {
		t.Fatalf("probe timings %+v", p)
	}
}

// TestRevokeHoldsFillsDropDoesNot: after a revocation-type op no lease is
// handed out for FillHold (a reader may still see the old row); after an
// INSERT's drop a lease is handed out at once.
func TestRevokeHoldsFillsDropDoesNot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{FillHold: 400 * time.Millisecond})
	revoked, inserted := session.HashToken("held"), session.HashToken("inserted")
	if _, err := c.Apply(ctx, []cache.Op{cache.Revoke(revoked), cache.Drop(inserted)}); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.Lookup(ctx, revoked); l.Lease != "" {
		t.Fatal("lease handed out right after a revocation")
	}
	if l, _ := c.Lookup(ctx, inserted); l.Lease == "" {
		t.Fatal("no lease after an insert's drop")
	}
	time.Sleep(500 * time.Millisecond)
	l, _ := c.Lookup(ctx, revoked)
	if l.Lease == "" {
		t.Fatal("fills still held after FillHold")
	}
	if ok, err := c.Fill(ctx, l, validSession(time.Hour)); !ok || err != nil {
		t.Fatalf("fill after the hold: %v %v", ok, err)
	}
}

// TestFlushClearsOnlyItsOwnMark: a flush clears the pending mark it was
// owed for, never one set again since.
func TestFlushClearsOnlyItsOwnMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	first, err := c.MarkFlushPending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := c.MarkFlushPending(ctx)
	if _, err := c.Flush(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.FlushPending(ctx); got != second {
		t.Fatalf("pending %q after a flush owed for an older mark, want %q", got, second)
	}
	if _, err := c.Flush(ctx, second); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.FlushPending(ctx); got != "" {
		t.Fatalf("pending %q after its own flush", got)
	}
}

// TestVouchOwedFlushAndRecheck: an owed flush clears its mark and records
// the transactions in progress; each later watermark that finds fewer of
// them flushes again, until none is left; one that read another recheck
// xid counts for nothing.
func TestVouchOwedFlushAndRecheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := newCache(t, cache.Options{})
	w := cache.Watermark{At: time.Now(), Source: "1/2/3", Catalog: "a"}
	if _, err := c.Vouch(ctx, cache.Vouch{Watermark: w, Xmax: 20, InProgress: 1}); err != nil {
		t.Fatal(err)
	}
	token, _ := c.MarkFlushPending(ctx)
	for i, step := range []struct {
		v       cache.Vouch
		reason  string
		recheck uint64
	}{
		// Flushed with 3 transactions in progress below xid 100.
		{cache.Vouch{Watermark: w, Owed: token, Xmax: 100, InProgress: 3}, "flush_pending", 100},
		{cache.Vouch{Watermark: w, Xmax: 110, InProgress: 5, Recheck: 100, Open: 3}, "", 100},
		// One ended (a long one stays open): flush again.
		{cache.Vouch{Watermark: w, Xmax: 120, InProgress: 4, Recheck: 100, Open: 2}, "recheck", 100},
		{cache.Vouch{Watermark: w, Xmax: 121, InProgress: 4, Recheck: 100, Open: 2}, "", 100},
		// Counted against a recheck read before it changed: ignored.
		{cache.Vouch{Watermark: w, Xmax: 122, InProgress: 4, Recheck: 7, Open: 0}, "", 100},
		{cache.Vouch{Watermark: w, Xmax: 130, InProgress: 1, Recheck: 100, Open: 0}, "recheck", 0},
		{cache.Vouch{Watermark: w, Xmax: 140, InProgress: 1}, "", 0},
	} {
		r, err := c.Vouch(ctx, step.v)
		if err != nil {
			t.Fatal(err)
		}
		if r.Reason != step.reason {
			t.Fatalf("step %d: reason %q, want %q", i, r.Reason, step.reason)
		}
		if rc, _ := c.Recheck(ctx); rc != step.recheck {
			t.Fatalf("step %d: recheck %d, want %d", i, rc, step.recheck)
		}
		if i == 0 {
			if p, _ := c.FlushPending(ctx); p != "" {
				t.Fatalf("mark %q left after its flush", p)
			}
		}
	}
	// A recheck scheduled from outside (prepare's flush) works alike; with
	// nothing in progress there is nothing to recheck.
	if err := c.ScheduleRecheck(ctx, 300, 2); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Vouch(ctx, cache.Vouch{Watermark: w, Xmax: 310, InProgress: 2, Recheck: 300, Open: 1}); r.Reason != "recheck" {
		t.Fatalf("scheduled recheck: reason %q", r.Reason)
	}
	if err := c.ScheduleRecheck(ctx, 400, 0); err != nil {
		t.Fatal(err)
	}
	if rc, _ := c.Recheck(ctx); rc != 0 {
		t.Fatalf("recheck %d with nothing in progress", rc)
	}
	// MarkFlushPendingIfNone keeps a mark that is there.
	held, _ := c.MarkFlushPending(ctx)
	if got, err := c.MarkFlushPendingIfNone(ctx); err != nil || got != "" {
		t.Fatalf("MarkFlushPendingIfNone over a mark: %q %v", got, err)
	}
	if p, _ := c.FlushPending(ctx); p != held {
		t.Fatalf("mark %q, want %q kept", p, held)
	}
	if err := c.ClearFlushPending(ctx, held); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.MarkFlushPendingIfNone(ctx); got == "" {
		t.Fatal("MarkFlushPendingIfNone set nothing with no mark")
	}
	// ClearFlushPending removes only its own mark.
	a, _ := c.MarkFlushPending(ctx)
	if err := c.ClearFlushPending(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.FlushPending(ctx); p != a {
		t.Fatalf("mark %q after clearing another token, want %q", p, a)
	}
	if err := c.ClearFlushPending(ctx, a); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.FlushPending(ctx); p != "" {
		t.Fatalf("mark %q after clearing it", p)
	}
}

// A watermark written to another server than the one last seen (a replica
// Sentinel promoted, holding the old master's <prefix>:srv but perhaps not
// its last drops) flushes first, in the same script: no check-then-write
// gap in which a failover could slip.
func TestVouchOnAnotherServerFlushesFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, rdb := newCache(t, cache.Options{})
	if _, err := c.FlushIfServerChanged(ctx); err != nil {
		t.Fatal(err)
	}
	wm := cache.Watermark{At: time.Now(), Source: "db"}
	if r, err := c.SetWatermark(ctx, wm); err != nil || r.Reason != "" {
		t.Fatalf("first watermark: %+v, %v", r, err)
	}
	h := session.HashToken("promoted")
	l, _ := c.Lookup(ctx, h)
	if ok, _ := c.Fill(ctx, l, validSession(time.Hour)); !ok {
		t.Fatal("fill refused")
	}
	if r, err := c.SetWatermark(ctx, wm); err != nil || r.Reason != "" {
		t.Fatalf("same server: %+v, %v; want no flush", r, err)
	}
	// What a promoted replica holds: the old master's run_id.
	if err := rdb.Set(ctx, c.Prefix()+":srv", "0123456789abcdef0123456789abcdef01234567", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := c.SetWatermark(ctx, wm)
	if err != nil || r.Reason != "redis_restart" {
		t.Fatalf("watermark on another server: %+v, %v; want reason redis_restart", r, err)
	}
	if l, _ := c.Lookup(ctx, h); l.Entry != nil {
		t.Fatal("an entry of the old server's namespace is served after the watermark moved")
	}
	if flushed, err := c.FlushIfServerChanged(ctx); err != nil || flushed {
		t.Fatalf("server recorded by the watermark: FlushIfServerChanged = %v, %v; want no second flush", flushed, err)
	}
}
