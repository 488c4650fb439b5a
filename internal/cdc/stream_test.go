package cdc

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// The receive loop's ack rules, driven with crafted pgoutput messages
// against a fake cache: no server can be made to hold a commit between
// two messages or to block Redis at an exact moment.

func beginMsg(finalLSN pglogrepl.LSN, xid uint32) []byte {
	b := binary.BigEndian.AppendUint64([]byte{'B'}, uint64(finalLSN))
	b = binary.BigEndian.AppendUint64(b, 0) // commit time
	return binary.BigEndian.AppendUint32(b, xid)
}

func commitMsg(commitLSN, endLSN pglogrepl.LSN) []byte {
	b := binary.BigEndian.AppendUint64([]byte{'C', 0}, uint64(commitLSN))
	b = binary.BigEndian.AppendUint64(b, uint64(endLSN))
	return binary.BigEndian.AppendUint64(b, 0) // commit time
}

// fakeCache records what the applier does. Apply blocks while gate is open
// (non-nil and not closed).
type fakeCache struct {
	mu         sync.Mutex
	applies    [][]cache.Op
	flushes    []string // owed argument of each Flush
	watermarks []cache.Watermark
	gate       chan struct{}
}

func (f *fakeCache) Apply(ctx context.Context, ops []cache.Op) (int, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, append([]cache.Op(nil), ops...))
	return len(ops), nil
}

func (f *fakeCache) Flush(_ context.Context, owed string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes = append(f.flushes, owed)
	return "", nil
}

// Vouch records the watermark, and an owed flush as a Flush of that token.
func (f *fakeCache) Vouch(_ context.Context, v cache.Vouch) (cache.Reset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v.Owed != "" {
		f.flushes = append(f.flushes, v.Owed)
	}
	f.watermarks = append(f.watermarks, v.Watermark)
	return cache.Reset{}, nil
}

func (f *fakeCache) Recheck(context.Context) (uint64, error)                { return 0, nil }
func (f *fakeCache) ScheduleRecheck(context.Context, uint64, uint64) error  { return nil }
func (f *fakeCache) ClearFlushPending(context.Context, string) error        { return nil }
func (f *fakeCache) MarkFlushPendingIfNone(context.Context) (string, error) { return "owed-1", nil }

func (f *fakeCache) PurgeGeneration(context.Context, string) (int, error) { return 0, nil }
func (f *fakeCache) Watermark(context.Context) (cache.Watermark, error) {
	return cache.Watermark{}, nil
}
func (f *fakeCache) Time(context.Context) (time.Time, error)            { return fakeNow, nil }
func (f *fakeCache) FlushIfServerChanged(context.Context) (bool, error) { return false, nil }
func (f *fakeCache) MarkFlushPending(context.Context) (string, error)   { return "owed-1", nil }
func (f *fakeCache) FlushPending(context.Context) (string, error)       { return "", nil }

var fakeNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

type fakeState struct {
	applies    [][]cache.Op
	flushes    []string
	watermarks []cache.Watermark
}

func (f *fakeCache) state() fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeState{append([][]cache.Op(nil), f.applies...), append([]string(nil), f.flushes...),
		append([]cache.Watermark(nil), f.watermarks...)}
}

// harness is one receiver over a fake cache, its applier running.
type harness struct {
	t       *testing.T
	ctx     context.Context
	fake    *fakeCache
	c       *Consumer
	r       *receiver
	reg     *prometheus.Registry
	mu      sync.Mutex
	updates []pglogrepl.StandbyStatusUpdate
	stopped bool
}

const startLSN = pglogrepl.LSN(0x1000)

func newHarness(t *testing.T, fake *fakeCache) *harness {
	t.Helper()
	h := &harness{t: t, ctx: t.Context(), fake: fake, reg: prometheus.NewRegistry()}
	h.c = New(fake, Options{BatchSize: 2, StatusInterval: time.Hour, ShutdownTimeout: 5 * time.Second,
		Metrics: NewMetrics(h.reg), Now: func() time.Time { return fakeNow }})
	h.r = h.c.newReceiver("public", startLSN, 0, func(_ context.Context, u pglogrepl.StandbyStatusUpdate) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.updates = append(h.updates, u)
		return nil
	})
	h.r.startApplier(h.ctx)
	t.Cleanup(func() {
		if !h.stopped {
			h.shutdown()
		}
	})
	h.xlog(0, relationMsg(7, "sessions", sessionsColumns)) // relation messages carry WALStart 0
	return h
}

func (h *harness) xlog(walStart pglogrepl.LSN, msg []byte) {
	h.t.Helper()
	if err := h.r.xlogData(h.ctx, walStart, walStart, msg); err != nil {
		h.t.Fatalf("xlogData at %s: %v", walStart, err)
	}
}

func (h *harness) shutdown() {
	h.stopped = true
	if err := h.r.shutdown(h.ctx, nil); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	h.r.stopAppl()
}

// eventually polls cond for up to two seconds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s (ackable %s, cache %+v)", what, h.r.ackable(), h.fake.state())
		}
		time.Sleep(time.Millisecond)
	}
}

// applied waits for n Apply calls.
func (h *harness) applied(n int) fakeState {
	h.t.Helper()
	h.eventually("apply calls", func() bool { return len(h.fake.state().applies) >= n })
	return h.fake.state()
}

func (h *harness) ackIs(want pglogrepl.LSN) {
	h.t.Helper()
	h.eventually("ack "+want.String(), func() bool { return h.r.ackable() == want })
}

// ackStays waits for n Apply calls, then checks that the ack has not moved
// past want: what the applier took is applied, so it never will.
func (h *harness) ackStays(n int, want pglogrepl.LSN) {
	h.t.Helper()
	h.applied(n)
	time.Sleep(20 * time.Millisecond)
	if got := h.r.ackable(); got != want {
		h.t.Fatalf("ackable %s, want %s", got, want)
	}
}

func token(i int) session.Hash { return session.HashToken("token-" + string(rune('a'+i))) }

func TestAckOnlyAtCommit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, &fakeCache{})
	h.xlog(0x2000, beginMsg(0x2080, 100))
	h.xlog(0x2010, insertMsg(7, token(0), future))
	h.xlog(0x2020, insertMsg(7, token(1), future)) // fills a batch: dispatched before the commit
	h.r.keepalive(0x3000)                          // inside a transaction: not an idle position
	h.ackStays(1, startLSN)
	h.xlog(0x2080, commitMsg(0x2070, 0x2090))
	h.ackIs(0x2090)
	if got := h.fake.state().applies; len(got) != 1 || len(got[0]) != 2 || got[0][0] != cache.Drop(token(0)) || got[0][1] != cache.Drop(token(1)) {
		t.Fatalf("applies %+v", got)
	}
	// The keepalive seen inside the transaction is not ackable after it either.
	time.Sleep(20 * time.Millisecond)
	if got := h.r.ackable(); got != 0x2090 {
		t.Fatalf("ackable %s after commit, want the commit end", got)
	}
	// A transaction left open at the end never moves the ack.
	h.xlog(0x4000, beginMsg(0x4080, 101))
	h.xlog(0x4010, insertMsg(7, token(2), future))
	h.r.keepalive(0x5000)
	time.Sleep(20 * time.Millisecond)
	if got := h.r.ackable(); got != 0x2090 {
		t.Fatalf("ackable %s inside an open transaction, want the last commit 0/2090", got)
	}
}

func TestAckIdleKeepalive(t *testing.T) {
	t.Parallel()
	fake := &fakeCache{}
	h := newHarness(t, fake)
	// Nothing in flight: a quiet table must not pin WAL.
	h.r.keepalive(0x1800)
	h.ackIs(0x1800)

	// Inside a transaction: not ackable, and not remembered as idle.
	h.xlog(0x2000, beginMsg(0x2080, 100))
	h.xlog(0x2010, insertMsg(7, token(0), future))
	h.r.keepalive(0x2800)
	if got := h.r.ackable(); got != startLSN {
		t.Fatalf("ackable %s inside a transaction, want %s", got, startLSN)
	}

	// Committed and dispatched but not yet applied (Redis slow): the idle
	// position must wait for it.
	gate := make(chan struct{})
	fake.mu.Lock()
	fake.gate = gate
	fake.mu.Unlock()
	h.xlog(0x2080, commitMsg(0x2070, 0x2090))
	h.r.keepalive(0x3000)
	time.Sleep(20 * time.Millisecond)
	if got := h.r.ackable(); got != startLSN {
		t.Fatalf("ackable %s while the commit is unapplied, want %s", got, startLSN)
	}
	close(gate)
	h.ackIs(0x3000)

	// A position ackable once stays reported after a status update, even
	// while a later transaction is open.
	if err := h.r.sendStatus(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.xlog(0x3100, beginMsg(0x3180, 101))
	h.r.keepalive(0x3800)
	if got := h.r.ackable(); got != 0x3000 {
		t.Fatalf("ackable %s after an ack of 0/3000, want it kept", got)
	}
}

func TestAckLargeTransactionInPieces(t *testing.T) {
	t.Parallel()
	h := newHarness(t, &fakeCache{})
	h.xlog(0x2000, beginMsg(0x2100, 100))
	for i := range 5 {
		h.xlog(pglogrepl.LSN(0x2010+i*0x10), insertMsg(7, token(i), future))
	}
	// BatchSize 2: two pieces are applied before the commit arrives.
	h.ackStays(2, startLSN)
	if got := h.fake.state().applies; len(got) != 2 || len(got[0]) != 2 || len(got[1]) != 2 {
		t.Fatalf("applies before commit %+v", got)
	}
	h.xlog(0x2100, commitMsg(0x20f0, 0x2110))
	h.ackIs(0x2110)
	got := h.applied(3).applies
	var all []cache.Op
	for _, ops := range got {
		all = append(all, ops...)
	}
	if len(got) != 3 || len(all) != 5 {
		t.Fatalf("applies %+v", got)
	}
	for i, op := range all {
		if op != cache.Drop(token(i)) {
			t.Fatalf("op %d = %+v, want drop of token %d (in order)", i, op, i)
		}
	}
	if st := h.c.Status(); st.Inserts != 5 || st.Applied != 5 {
		t.Fatalf("status counts %+v", st)
	}
}

func TestPoisonFlushesAndContinues(t *testing.T) {
	t.Parallel()
	h := newHarness(t, &fakeCache{})
	h.xlog(0x2000, beginMsg(0x2080, 100))
	h.xlog(0x2010, insertMsg(7, token(0), future))
	h.xlog(0x2020, []byte{'I', 0, 0, 0, 7, 'N', 0, 7, 't', 0, 0, 0, 200, 'a'}) // undecodable: no error
	h.xlog(0x2030, updateMsg(7, 0, nil, row(token(1), future, nil)))
	h.xlog(0x2080, commitMsg(0x2070, 0x2090))
	h.ackIs(0x2090)
	st := h.fake.state()
	if len(st.flushes) != 1 || st.flushes[0] != "" {
		t.Fatalf("flushes %q, want one (not owed)", st.flushes)
	}
	if s := h.c.Status(); s.Undecodable != 1 || s.Flushes != 1 {
		t.Fatalf("status %+v, want 1 undecodable, 1 flush", s)
	}
	if n := testutil.ToFloat64(h.c.m.decodeErrors); n != 1 {
		t.Fatalf("decode errors %v", n)
	}
	// The stream goes on: the next transaction is applied and acked.
	h.xlog(0x3000, beginMsg(0x3080, 101))
	h.xlog(0x3010, deleteMsg(7, token(2)))
	h.xlog(0x3080, commitMsg(0x3070, 0x3090))
	h.ackIs(0x3090)
	st = h.fake.state()
	// A revocation is applied holding fills, then again once visible.
	held, settled := st.applies[len(st.applies)-2], st.applies[len(st.applies)-1]
	if len(held) != 1 || held[0] != cache.Revoke(token(2)) || len(settled) != 1 || settled[0] != cache.Settled(held)[0] {
		t.Fatalf("last applies %+v, %+v; want the revocation held, then settled", held, settled)
	}
	if len(st.flushes) != 1 {
		t.Fatalf("flushes %q after a clean transaction", st.flushes)
	}

	// Undecodable outside a transaction: flushed at once.
	h.xlog(0x3100, []byte{'Z', 1, 2})
	h.eventually("a second flush", func() bool { return len(h.fake.state().flushes) == 2 })
}

func TestStreamHeartbeats(t *testing.T) {
	t.Parallel()
	h := newHarness(t, &fakeCache{})
	at := time.UnixMilli(1_780_000_000_123)
	ours := sign(h.c.key[:], heartbeat{At: at, Source: "sys/1/2"})
	h.xlog(0x2000, beginMsg(0x2080, 100))
	h.xlog(0x2010, logicalMsg(true, 0x2010, HeartbeatPrefix, []byte(ours)))
	h.xlog(0x2080, commitMsg(0x2070, 0x2090))
	h.ackIs(0x2090)
	h.eventually("watermark", func() bool { return len(h.fake.state().watermarks) == 1 })
	if w := h.fake.state().watermarks[0]; !w.At.Equal(at) || w.Source != "sys/1/2" {
		t.Fatalf("watermark %+v", w)
	}
	if s := h.c.Status(); !s.Watermark.Equal(at) {
		t.Fatalf("status watermark %v", s.Watermark)
	}

	// Another process's, and the forgeries: ignored and counted,
	// never fatal, and the stream is acked past them.
	otherKey := make([]byte, 32)
	later := at.Add(time.Hour)
	end := pglogrepl.LSN(0x2090)
	for i, content := range []string{sign(otherKey, heartbeat{At: later, Source: "sys/1/2"}), "99999999999999", "x"} {
		base := pglogrepl.LSN(0x3000 + i*0x1000)
		h.xlog(base, beginMsg(base+0x80, uint32(101+i)))
		h.xlog(base+0x10, logicalMsg(true, uint64(base+0x10), HeartbeatPrefix, []byte(content)))
		end = base + 0x90
		h.xlog(base+0x80, commitMsg(base+0x70, end))
	}
	h.ackIs(end)
	st := h.fake.state()
	if len(st.watermarks) != 1 || len(st.flushes) != 0 {
		t.Fatalf("watermarks %+v flushes %q after foreign heartbeats", st.watermarks, st.flushes)
	}
	if s := h.c.Status(); !s.Watermark.Equal(at) || s.Undecodable != 0 {
		t.Fatalf("status %+v", s)
	}
	if n := testutil.ToFloat64(h.c.m.foreign); n != 3 {
		t.Fatalf("foreign heartbeats %v, want 3", n)
	}
	if n := testutil.ToFloat64(h.c.m.decodeErrors); n != 0 {
		t.Fatalf("decode errors %v, want 0", n)
	}

	// An owed flush is done before the watermark moves.
	h.xlog(0x8000, beginMsg(0x8080, 200))
	h.xlog(0x8010, logicalMsg(true, 0x8010, HeartbeatPrefix, []byte(sign(h.c.key[:], heartbeat{At: later, Source: "sys/1/2", Owed: "owed-1"}))))
	h.xlog(0x8080, commitMsg(0x8070, 0x8090))
	h.ackIs(0x8090)
	h.eventually("second watermark", func() bool { return len(h.fake.state().watermarks) == 2 })
	if st := h.fake.state(); len(st.flushes) != 1 || st.flushes[0] != "owed-1" || !st.watermarks[1].At.Equal(later) {
		t.Fatalf("owed flush %q watermarks %+v", st.flushes, st.watermarks)
	}
}

func TestShutdownAppliesQueuedAndAcks(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	fake := &fakeCache{gate: gate}
	h := newHarness(t, fake)
	h.xlog(0x2000, beginMsg(0x2080, 100))
	h.xlog(0x2010, insertMsg(7, token(0), future))
	h.xlog(0x2080, commitMsg(0x2070, 0x2090))
	h.xlog(0x3000, beginMsg(0x3080, 101))
	h.xlog(0x3010, deleteMsg(7, token(1)))
	h.xlog(0x3080, commitMsg(0x3070, 0x3090))
	// A third transaction is cut off by the shutdown: not applied, not acked.
	h.xlog(0x4000, beginMsg(0x4080, 102))
	h.xlog(0x4010, insertMsg(7, token(2), future))
	h.r.keepalive(0x5000)
	if got := h.r.ackable(); got != startLSN {
		t.Fatalf("ackable %s before anything applied", got)
	}
	time.AfterFunc(50*time.Millisecond, func() { close(gate) })
	h.shutdown()
	st := fake.state()
	// The revocation is applied twice: holding fills, then once visible.
	if len(st.applies) != 3 || st.applies[0][0] != cache.Drop(token(0)) || st.applies[1][0] != cache.Revoke(token(1)) ||
		st.applies[2][0] != cache.Settled(st.applies[1])[0] {
		t.Fatalf("applies %+v, want the two committed transactions", st.applies)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.updates) == 0 {
		t.Fatal("no final status update")
	}
	u := h.updates[len(h.updates)-1]
	if u.WALFlushPosition != 0x3090 || u.WALApplyPosition != 0x3090 || u.WALWritePosition < 0x3090 {
		t.Fatalf("final status %+v, want flush and apply at the last applied commit 0/3090", u)
	}
	if s := h.c.Status(); s.Acked != 0x3090 {
		t.Fatalf("status acked %s", s.Acked)
	}
}
