package inspect_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/inspect"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// staleness is the MAX_STALENESS the tests inspect with: a short grace.
const staleness = 100 * time.Millisecond

// table is a sessions table as these tests drive it.
type table struct {
	name       string
	world      func(t *testing.T) *testenv.World
	newSession func(t *testing.T, w *testenv.World) (token, id string)
	revoke     string // SQL ending session $1 as its writers do
	revoked    inspect.Kind
	shownID    func(w *testenv.World, id string) string // the id a report shows
}

func tables() []table {
	asIs := func(_ *testenv.World, id string) string { return id }
	var out []table
	for _, src := range append(testenv.Sources(), testenv.ByIDSources()...) {
		kind := inspect.KindMissing // signed out by deleting the row
		if src.Name == source.Sessionguard {
			kind = inspect.KindRevoked
		}
		out = append(out, table{
			name:       src.Name,
			world:      func(t *testing.T) *testenv.World { return src.NewWorld(t, "") },
			newSession: func(t *testing.T, w *testenv.World) (string, string) { return src.NewSession(t, w) },
			revoke:     src.Revoke, revoked: kind, shownID: asIs,
		})
	}
	// Django's session key is the credential: shown only as its hash, and
	// its row found by scanning the table.
	return append(out, table{
		name:  source.Django,
		world: func(t *testing.T) *testenv.World { return testenv.NewStoreWorld(t, source.Django) },
		newSession: func(t *testing.T, w *testenv.World) (string, string) {
			key := testenv.DjangoNewSessionKey()
			if err := testenv.DjangoCreate(context.Background(), w.Pool, testenv.StoreSecret, key, []byte(`{"_auth_user_id":"1"}`)); err != nil {
				t.Fatal(err)
			}
			return key, key
		},
		revoke: `DELETE FROM django_session WHERE session_key = $1`, revoked: inspect.KindMissing,
		shownID: func(w *testenv.World, id string) string { return w.Table.IDHash(id).Hex() },
	})
}

func eachTable(t *testing.T, test func(t *testing.T, tb table, w *testenv.World)) {
	for _, tb := range tables() {
		t.Run(tb.name, func(t *testing.T) {
			t.Parallel()
			test(t, tb, tb.world(t))
		})
	}
}

func inspector(w *testenv.World, wait func(context.Context, time.Duration) error) *inspect.Inspector {
	return inspect.New(w.Cache, w.Store, inspect.Options{MaxStaleness: staleness, Wait: wait})
}

func run(t *testing.T, in *inspect.Inspector) inspect.Report {
	t.Helper()
	r, err := in.Inspect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// An agreeing cache (a valid session, a revoked one cached as invalid)
// reports nothing; a revoked session the cache still holds valid, and a
// valid one it holds invalid, are each reported as their kind, past the
// grace, in text and in JSON, with no token.
func TestReportsWhatDisagrees(t *testing.T) {
	t.Parallel()
	eachTable(t, func(t *testing.T, tb table, w *testenv.World) {
		valid, _ := tb.newSession(t, w)
		w.Plant(t, valid, w.Row(t, valid))
		gone, goneID := tb.newSession(t, w)
		w.Exec(t, tb.revoke, goneID)
		w.Plant(t, gone, nil)

		r := run(t, inspector(w, nil))
		if r.Checked != 2 || r.Disagrees() || r.Resolved != 0 {
			t.Fatalf("agreeing cache: %+v", r)
		}
		var text strings.Builder
		if err := r.WriteText(&text); err != nil || !strings.Contains(text.String(), "All agree") {
			t.Fatalf("text %q %v", text.String(), err)
		}

		stale, staleID := tb.newSession(t, w)
		w.Plant(t, stale, w.Row(t, stale))
		w.Exec(t, tb.revoke, staleID)
		refused, refusedID := tb.newSession(t, w)
		w.Plant(t, refused, nil)

		start := time.Now()
		r = run(t, inspector(w, nil))
		if took := time.Since(start); took < staleness+inspect.Margin {
			t.Fatalf("reported after %v, within the grace", took)
		}
		want := map[inspect.Kind]string{tb.revoked: tb.shownID(w, staleID), inspect.KindNegative: tb.shownID(w, refusedID)}
		if r.Checked != 4 || len(r.Disagreements) != 2 {
			t.Fatalf("report %+v", r)
		}
		for _, d := range r.Disagreements {
			if want[d.Kind] != d.SessionID || !strings.HasSuffix(d.RedisKey, ":s:"+d.KeyHash) || d.For < staleness {
				t.Fatalf("disagreement %+v, want kinds and ids %v", d, want)
			}
		}

		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Checked       int                  `json:"checked"`
			Disagreeing   int                  `json:"disagreeing"`
			Counts        map[inspect.Kind]int `json:"counts"`
			Disagreements []struct {
				Kind      inspect.Kind `json:"kind"`
				SessionID string       `json:"session_id"`
				KeyHash   string       `json:"key_hash"`
			} `json:"disagreements"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Checked != 4 || doc.Disagreeing != 2 || doc.Counts[tb.revoked] != 1 || doc.Counts[inspect.KindNegative] != 1 || len(doc.Disagreements) != 2 {
			t.Fatalf("json %s", raw)
		}
		text.Reset()
		if err := r.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{valid, gone, stale, refused} {
			if secret := strings.Split(tok, ".")[0]; strings.Contains(string(raw), secret) || strings.Contains(text.String(), secret) {
				t.Fatalf("a token is in the report:\n%s\n%s", raw, text.String())
			}
		}
		if !strings.Contains(text.String(), string(tb.revoked)) || !strings.Contains(text.String(), "negative") {
			t.Fatalf("text %q", text.String())
		}
	})
}

// A disagreement that ends within the grace (the entry dropped as the
// invalidator drops it, or updated in place) is not reported.
func TestResolvedWithinTheGraceIsNotReported(t *testing.T) {
	t.Parallel()
	eachTable(t, func(t *testing.T, tb table, w *testenv.World) {
		stale, id := tb.newSession(t, w)
		w.Plant(t, stale, w.Row(t, stale))
		w.Exec(t, tb.revoke, id)
		cred, err := w.Creds.Credential(stale)
		if err != nil {
			t.Fatal(err)
		}
		waited := false
		r := run(t, inspector(w, func(ctx context.Context, d time.Duration) error {
			waited = true
			if err := w.Cache.Invalidate(ctx, cred.Key.Hash); err != nil {
				return err
			}
			time.Sleep(d)
			return nil
		}))
		if !waited || r.Disagrees() || r.Resolved != 1 {
			t.Fatalf("waited %v, report %+v", waited, r)
		}
	})
}

// plantAt writes the entry of key hash h as a validator's fill would: sess,
// or a negative entry when sess is nil.
func plantAt(t *testing.T, w *testenv.World, h session.Hash, sess *session.Session) {
	t.Helper()
	l, err := w.Cache.Lookup(context.Background(), h)
	if err != nil || l.Lease == "" {
		t.Fatalf("lookup: lease %q, %v", l.Lease, err)
	}
	if ok, err := w.Cache.Fill(context.Background(), l, sess); !ok || err != nil {
		t.Fatalf("fill: %v %v", ok, err)
	}
}

func randomHash(t *testing.T) session.Hash {
	var h session.Hash
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return h
}

// recording is a cache that notes every entry read.
type recording struct {
	*cache.Cache
	mu   sync.Mutex
	read map[session.Hash]bool
}

func (c *recording) ReadEntries(ctx context.Context, gen string, hashes []session.Hash) ([]cache.Sampled, error) {
	c.mu.Lock()
	for _, h := range hashes {
		c.read[h] = true
	}
	c.mu.Unlock()
	return c.Cache.ReadEntries(ctx, gen, hashes)
}

// A sample compares at most n entries; successive samples go on where the
// last stopped, the rest of a SCAN page included, so they walk every entry
// of a namespace of several pages.
func TestSampleWalksOn(t *testing.T) {
	t.Parallel()
	w := testenv.NewWorld(t, "")
	const entries, n = 3000, 20
	for i := 0; i < entries; i++ {
		plantAt(t, w, randomHash(t), nil) // a token no row has: agrees
	}
	rec := &recording{Cache: w.Cache, read: map[session.Hash]bool{}}
	in := inspect.New(rec, w.Store, inspect.Options{MaxStaleness: staleness})
	for i := 0; i < entries/n+10; i++ {
		r, err := in.Inspect(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		if r.Checked > n || r.Disagrees() {
			t.Fatalf("sample of %d: %+v", n, r)
		}
	}
	if len(rec.read) != entries {
		t.Fatalf("%d samples of %d read %d distinct entries of %d", entries/n+10, n, len(rec.read), entries)
	}
}

// slowRows reads rows as its Store does, the first Find only after before
// has run.
type slowRows struct {
	*pg.Store
	once   sync.Once
	before func()
}

func (r *slowRows) Find(ctx context.Context, probes []pg.Probe) ([]pg.Found, error) {
	r.once.Do(r.before)
	return r.Store.Find(ctx, probes)
}

// A change committed just before the rows are read, long after the entries
// were, still has the whole grace to reach the cache: an invalidator that
// drops the entry a little within the grace of the commit resolves it.
func TestGraceStartsOnceTheRowsAreRead(t *testing.T) {
	t.Parallel()
	w := testenv.NewWorld(t, "")
	stale, id := w.NewSession(t)
	w.Plant(t, stale, w.Row(t, stale))
	const grace = staleness + inspect.Margin
	var committed time.Time
	rows := &slowRows{Store: w.Store, before: func() {
		time.Sleep(grace) // a slow read of Postgres
		w.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
		committed = time.Now()
	}}
	cred, err := w.Creds.Credential(stale)
	if err != nil {
		t.Fatal(err)
	}
	var waited time.Duration
	in := inspect.New(w.Cache, rows, inspect.Options{MaxStaleness: staleness, Wait: func(ctx context.Context, d time.Duration) error {
		waited = d
		deadline := time.Now().Add(d)
		// The invalidator applies the change 100ms within the grace.
		if drop := committed.Add(grace - 100*time.Millisecond); drop.Before(deadline) {
			time.Sleep(time.Until(drop))
			if err := w.Cache.Invalidate(ctx, cred.Key.Hash); err != nil {
				return err
			}
		}
		time.Sleep(time.Until(deadline))
		return nil
	}})
	r := run(t, in)
	if waited < grace-100*time.Millisecond || r.Disagrees() || r.Resolved != 1 {
		t.Fatalf("waited %v of a grace of %v; report %+v", waited, grace, r)
	}
}

// With the validators' timeouts unknown (the invalidator's check), a
// negative entry of a valid row is skipped, not reported: a timeout may
// have made it. A positive entry is still compared.
func TestRuleUnknownSkipsNegativeEntries(t *testing.T) {
	t.Parallel()
	w := testenv.NewWorld(t, "")
	refused, _ := w.NewSession(t)
	w.Plant(t, refused, nil)
	valid, _ := w.NewSession(t)
	w.Plant(t, valid, w.Row(t, valid))
	r, err := inspect.New(w.Cache, w.Store, inspect.Options{MaxStaleness: staleness, RuleUnknown: true}).Inspect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Skipped[inspect.SkipTimeouts] != 1 || r.Checked != 1 || r.Disagrees() || r.Resolved != 0 {
		t.Fatalf("report %+v", r)
	}
}

// One odd entry is skipped as unreadable, and the others compared: a key
// of another type than a string, an id that is no uuid where the table's
// is (Supabase's key, Kratos's primary key), an id with a NUL (Better
// Auth's text id).
func TestOddEntriesAreSkipped(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		world func(t *testing.T) *testenv.World
		plant func(t *testing.T, w *testenv.World)
	}{
		{"not a string", func(t *testing.T) *testenv.World { return testenv.NewWorld(t, "") }, func(t *testing.T, w *testenv.World) {
			gen, err := w.Cache.Generation(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := w.RDB.HSet(context.Background(), w.Cache.EntryKey(gen, randomHash(t)), "f", "v").Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"supabase id no uuid", func(t *testing.T) *testenv.World { return testenv.SourceOf(t, supabaseTable(t)).NewWorld(t, "") },
			func(t *testing.T, w *testenv.World) {
				plantAt(t, w, w.Table.KeyOf("not-a-uuid").Hash, &session.Session{ID: "not-a-uuid", ExpiresAt: time.Now().Add(time.Hour)})
			}},
		{"kratos id no uuid", func(t *testing.T) *testenv.World { return testenv.NewStoreWorld(t, source.Kratos) },
			func(t *testing.T, w *testenv.World) {
				plantAt(t, w, randomHash(t), &session.Session{ID: "not-a-uuid", ExpiresAt: time.Now().Add(time.Hour)})
			}},
		{"better-auth id with a NUL", func(t *testing.T) *testenv.World { return testenv.NewStoreWorld(t, source.BetterAuth) },
			func(t *testing.T, w *testenv.World) {
				plantAt(t, w, randomHash(t), &session.Session{ID: "a\x00b", ExpiresAt: time.Now().Add(time.Hour)})
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := c.world(t)
			plantAt(t, w, randomHash(t), nil) // a token no row has: agrees
			c.plant(t, w)
			r := run(t, inspector(w, nil))
			if r.Skipped[inspect.SkipUnreadable] != 1 || r.Checked != 1 || r.Disagrees() {
				t.Fatalf("report %+v", r)
			}
		})
	}
}

func supabaseTable(t *testing.T) source.Table {
	tb, err := source.TableOf(source.Supabase)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// A disagreement is covered only by a watermark that vouches for the
// database read: one of another database (or table) covers none.
func TestForeignWatermarkCoversNothing(t *testing.T) {
	t.Parallel()
	w := testenv.NewWorld(t, "")
	own, err := w.Store.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stale, id := w.NewSession(t)
	row := w.Row(t, stale)
	w.Exec(t, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
	for _, c := range []struct {
		source  string
		covered bool
	}{{own, true}, {"7000000000000000000/1/2", false}} {
		// Far ahead: past every first sighting. A new source starts a new
		// namespace, so the entry is planted after.
		if _, err := w.Cache.SetWatermark(context.Background(), cache.Watermark{At: time.Now().Add(time.Hour), Source: c.source}); err != nil {
			t.Fatal(err)
		}
		w.Plant(t, stale, row)
		r := run(t, inspector(w, nil))
		if len(r.Disagreements) != 1 || r.Disagreements[0].Covered != c.covered || r.ForeignWatermark == c.covered {
			t.Fatalf("watermark of %s: report %+v", c.source, r)
		}
	}
}

// standbyRows reads as its Store does, and says it read on a standby:
// in its identity, or in the rows found.
type standbyRows struct {
	*pg.Store
	identity bool
}

func (r standbyRows) Identity(ctx context.Context) (string, error) {
	id, err := r.Store.Identity(ctx)
	if r.identity {
		id += pg.StandbySuffix
	}
	return id, err
}

func (r standbyRows) Find(ctx context.Context, probes []pg.Probe) ([]pg.Found, error) {
	found, err := r.Store.Find(ctx, probes)
	for i := range found {
		found[i].Standby = true
	}
	return found, err
}

// An inspection reads a primary only: a standby may lag the primary the
// invalidator follows, so its rows would show changes in flight as
// disagreements.
func TestStandbyIsRefused(t *testing.T) {
	t.Parallel()
	w := testenv.NewWorld(t, "")
	tok, _ := w.NewSession(t)
	w.Plant(t, tok, w.Row(t, tok))
	for _, identity := range []bool{true, false} {
		_, err := inspect.New(w.Cache, standbyRows{Store: w.Store, identity: identity}, inspect.Options{MaxStaleness: staleness}).Inspect(context.Background(), 0)
		if !errors.Is(err, inspect.ErrStandby) {
			t.Fatalf("standby identity %v: %v, want ErrStandby", identity, err)
		}
	}
}

// The invalidator's check reads only indexed rows: a negative entry of a
// table whose key is not the hash, and every entry of Django's, are left
// out and counted as skipped.
func TestIndexedOnlySkipsScans(t *testing.T) {
	t.Parallel()
	eachTable(t, func(t *testing.T, tb table, w *testenv.World) {
		tok, _ := tb.newSession(t, w)
		w.Plant(t, tok, nil)
		tok2, _ := tb.newSession(t, w)
		w.Plant(t, tok2, w.Row(t, tok2))
		r, err := inspect.New(w.Cache, w.Store, inspect.Options{MaxStaleness: staleness, IndexedOnly: true}).Inspect(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		wantSkipped := map[string]int{source.Sessionguard: 0, source.Supabase: 1, source.BetterAuth: 1, source.Django: 2}[tb.name]
		if r.Skipped[inspect.SkipNeedsScan] != wantSkipped || r.Checked != 2-wantSkipped {
			t.Fatalf("report %+v, want %d skipped", r, wantSkipped)
		}
		// The negative entry disagrees, where it is compared.
		if r.Disagrees() != (wantSkipped == 0) {
			t.Fatalf("report %+v", r)
		}
	})
}

var slotSeq atomic.Int64

// With the invalidator stopped, a revocation leaves a stale entry; the
// invalidator started during the grace applies it from its slot, and the
// inspection reports nothing.
func TestInvalidatorCatchingUpWithinTheGrace(t *testing.T) {
	t.Parallel()
	src := testenv.SourceOf(t, testenv.OwnTable())
	w := src.NewWorld(t, "")
	slot := fmt.Sprintf("sg_inspect_%d_%d", time.Now().UnixNano()%1e6, slotSeq.Add(1))
	t.Cleanup(func() {
		_, _ = w.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name)
			FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot)
	})
	consumer := func() (stop func()) {
		c := cdc.New(w.Cache, cdc.Options{DatabaseURL: w.URL, Slot: slot, Publication: src.Publication, Table: w.Table,
			HeartbeatInterval: 100 * time.Millisecond, StandbyPoll: 100 * time.Millisecond, Logger: zaptest.NewLogger(t)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		testenv.WaitFor(t, 60*time.Second, "the consumer streaming", func() bool {
			s := c.Status()
			return s.Streaming && !s.Watermark.IsZero()
		})
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	stop := consumer()
	token, id := src.NewSession(t, w)
	w.Warm(t, token)
	w.WatermarkFresh(t, 10*time.Second) // everything before it is acknowledged
	stop()
	w.Exec(t, src.Revoke, id)

	in := inspect.New(w.Cache, w.Store, inspect.Options{MaxStaleness: 2 * time.Second, Wait: func(ctx context.Context, d time.Duration) error {
		deadline := time.Now().Add(d)
		stop := consumer()
		t.Cleanup(stop)
		testenv.WaitFor(t, 20*time.Second, "the invalidator to drop the entry", func() bool {
			en := w.Entry(t, token)
			return en == nil || en.Negative
		})
		time.Sleep(time.Until(deadline))
		return nil
	}})
	r, err := in.Inspect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Disagrees() || r.Resolved != 1 {
		t.Fatalf("report %+v", r)
	}
}
