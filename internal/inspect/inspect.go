// Package inspect checks the session cache against Postgres, the truth: it
// reads entries of the current generation (never writing to Redis), finds
// the row each stands for, judges both as a validator would
// (validation.AnswerDiff), and reports an entry whose answer differs only
// if it still differs, the same entry, once the grace has passed: a
// disagreement younger than that is a change on its way through the
// invalidator.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// Cache is what an inspection reads of Redis; *cache.Cache is one. None of
// these calls writes.
type Cache interface {
	Generation(ctx context.Context) (string, error)
	Watermark(ctx context.Context) (cache.Watermark, error)
	Time(ctx context.Context) (time.Time, error)
	ScanEntries(ctx context.Context, gen string, cursor uint64) ([]session.Hash, uint64, error)
	ReadEntries(ctx context.Context, gen string, hashes []session.Hash) ([]cache.Sampled, error)
	EntryKey(gen string, h session.Hash) string
}

// Rows finds the rows entries stand for; *pg.Store is one.
type Rows interface {
	Find(ctx context.Context, probes []pg.Probe) ([]pg.Found, error)
	Indexed(p pg.Probe) bool
	Fits(p pg.Probe) bool
	Identity(ctx context.Context) (string, error)
}

// ErrStandby: Postgres is a standby, whose rows may lag the primary the
// invalidator follows; an inspection reads only a primary.
var ErrStandby = errors.New("DATABASE_URL reaches a standby (a server in recovery), whose rows may lag the primary the invalidator follows: inspect against the primary")

// Margin is added to MaxStaleness before a disagreement is re-checked:
// the validators' bound is MAX_STALENESS plus a Redis round trip.
const Margin = 500 * time.Millisecond

// refillSlack is how much longer an entry may have to live on a re-read
// than its first read implies and still be the same entry.
const refillSlack = 100 * time.Millisecond

// batch is how many entries one Redis read and one Find take.
const batch = 1000

// samplePages bounds the SCAN calls of one sample: a Redis holding few
// entries among many other keys is walked over several samples.
const samplePages = 100

// Options configure an Inspector.
type Options struct {
	// Rule is the validators' rule (session timeouts).
	Rule session.Rule
	// MaxStaleness is the validators' MAX_STALENESS: a disagreement is
	// reported only once it has lasted this plus Margin.
	MaxStaleness time.Duration
	// IndexedOnly leaves out the entries whose row only a sequential scan
	// of the table finds (pg.Store.Indexed), counted as skipped.
	IndexedOnly bool
	// RuleUnknown: validators may apply session timeouts that Rule lacks
	// (the invalidator's check does not know them), so a negative entry
	// may stand for a session one of them ended: negative entries are left
	// out, counted as skipped.
	RuleUnknown bool
	// Wait waits d before the re-check (default: a timer); tests hook it.
	Wait func(ctx context.Context, d time.Duration) error
}

// Inspector compares cache entries with their rows. It keeps its SCAN
// cursor, and what a sample left of the last page read, between samples,
// so successive samples walk the whole namespace. One goroutine at a time.
type Inspector struct {
	c        Cache
	rows     Rows
	o        Options
	gen      string // the generation cursor walks
	cursor   uint64
	rest     []session.Hash // of the last page read, not yet sampled
	identity string         // Postgres's (pg.IdentitySQL), read by each Inspect
}

// New returns an Inspector.
func New(c Cache, rows Rows, o Options) *Inspector {
	if o.Wait == nil {
		o.Wait = sleep
	}
	return &Inspector{c: c, rows: rows, o: o}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Grace is how long a disagreement may last before it is reported.
func (in *Inspector) Grace() time.Duration { return in.o.MaxStaleness + Margin }

// suspect is an entry that disagreed when first read.
type suspect struct {
	first   cache.Sampled
	readAt  time.Time // this host's clock, after the entry was read
	foundAt time.Time // this host's clock, after its row was read: the grace starts
	seenAt  time.Time // Redis's clock, after its row was read
}

// Inspect compares n entries of the current generation (n <= 0: all of
// them, in one walk from the start) with Postgres and re-checks those that
// disagree once the grace has passed (from when their rows were read). An
// error is ErrStandby, or means Redis or Postgres could not be read.
func (in *Inspector) Inspect(ctx context.Context, n int) (Report, error) {
	r := Report{Grace: in.Grace(), Counts: map[Kind]int{}, Skipped: map[string]int{}}
	gen, err := in.c.Generation(ctx)
	if err != nil {
		return r, fmt.Errorf("read redis: %w", err)
	}
	r.Generation = gen
	if in.identity, err = in.rows.Identity(ctx); err != nil {
		return r, fmt.Errorf("read postgres: %w", err)
	}
	if strings.HasSuffix(in.identity, pg.StandbySuffix) {
		return r, ErrStandby
	}
	if err := in.watermark(ctx, &r); err != nil {
		return r, err
	}
	if gen == "" {
		return r, nil
	}
	if gen != in.gen || n <= 0 {
		in.gen, in.cursor, in.rest = gen, 0, nil
	}
	var suspects []suspect
	seen := map[session.Hash]bool{}
	var pending []session.Hash
	check := func() error {
		s, err := in.firstPass(ctx, gen, pending, &r)
		suspects = append(suspects, s...)
		pending = pending[:0]
		return err
	}
	full := func() bool { return n > 0 && r.Checked+len(pending) >= n }
	// take samples hashes; what a full sample leaves is kept for the next.
	take := func(hashes []session.Hash) error {
		for i, h := range hashes {
			if full() {
				in.rest = append(in.rest, hashes[i:]...)
				return nil
			}
			if seen[h] {
				continue
			}
			seen[h] = true
			if pending = append(pending, h); len(pending) == batch {
				if err := check(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	rest := in.rest
	in.rest = nil
	if err := take(rest); err != nil {
		return r, err
	}
	for pages := 0; !full() && (n <= 0 || pages < samplePages); pages++ {
		hashes, next, err := in.c.ScanEntries(ctx, gen, in.cursor)
		if err != nil {
			return r, fmt.Errorf("read redis: %w", err)
		}
		in.cursor = next
		if err := take(hashes); err != nil {
			return r, err
		}
		if next == 0 {
			break
		}
	}
	if len(pending) > 0 {
		if err := check(); err != nil {
			return r, err
		}
	}
	if len(suspects) == 0 {
		return r, nil
	}
	if err := in.o.Wait(ctx, in.Grace()-time.Since(suspects[len(suspects)-1].foundAt)); err != nil {
		return r, err
	}
	return r, in.recheck(ctx, gen, suspects, &r)
}

// watermark notes the watermark's age on Redis's clock, and whether it
// vouches for another database or table.
func (in *Inspector) watermark(ctx context.Context, r *Report) error {
	wm, err := in.c.Watermark(ctx)
	if err != nil {
		return fmt.Errorf("read redis: %w", err)
	}
	if wm.IsZero() {
		return nil
	}
	r.ForeignWatermark = wm.Source != in.identity
	now, err := in.c.Time(ctx)
	if err != nil {
		return fmt.Errorf("read redis: %w", err)
	}
	age := now.Sub(wm.At)
	r.WatermarkAge = &age
	return nil
}

// firstPass reads the entries of hashes and their rows, and returns those
// that disagree.
func (in *Inspector) firstPass(ctx context.Context, gen string, hashes []session.Hash, r *Report) ([]suspect, error) {
	entries, err := in.c.ReadEntries(ctx, gen, hashes)
	if err != nil {
		return nil, fmt.Errorf("read redis: %w", err)
	}
	readAt := time.Now()
	var (
		probed []cache.Sampled
		probes []pg.Probe
	)
	for _, e := range entries {
		p, ok := probe(e)
		switch {
		case e.NotString || (ok && !in.rows.Fits(p)):
			r.Skipped[SkipUnreadable]++
		case !ok:
			r.Skipped[SkipUndecodable]++
		case in.o.RuleUnknown && e.Entry.Negative:
			r.Skipped[SkipTimeouts]++
		case in.o.IndexedOnly && !in.rows.Indexed(p):
			r.Skipped[SkipNeedsScan]++
		default:
			probed, probes = append(probed, e), append(probes, p)
		}
	}
	if len(probes) == 0 {
		return nil, nil
	}
	found, err := in.find(ctx, probes)
	if err != nil {
		return nil, err
	}
	foundAt := time.Now()
	r.Checked += len(probes)
	var out []suspect
	for i, e := range probed {
		if kind, _ := classify(in.o.Rule, e.Entry, found[i]); kind != "" {
			out = append(out, suspect{first: e, readAt: readAt, foundAt: foundAt})
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	// Redis's clock after the rows were read: a watermark at or past it
	// vouches for every change those reads saw.
	seenAt, err := in.c.Time(ctx)
	if err != nil {
		return nil, fmt.Errorf("read redis: %w", err)
	}
	for i := range out {
		out[i].seenAt = seenAt
	}
	return out, nil
}

// recheck reads the suspects again and reports those that still disagree
// and are the same entries.
func (in *Inspector) recheck(ctx context.Context, gen string, suspects []suspect, r *Report) error {
	now, err := in.c.Generation(ctx)
	if err != nil {
		return fmt.Errorf("read redis: %w", err)
	}
	if now != gen {
		// Flushed: no validator reads those entries any more.
		r.Resolved += len(suspects)
		return nil
	}
	wm, err := in.c.Watermark(ctx)
	if err != nil {
		return fmt.Errorf("read redis: %w", err)
	}
	for start := 0; start < len(suspects); start += batch {
		part := suspects[start:min(start+batch, len(suspects))]
		hashes := make([]session.Hash, len(part))
		for i, s := range part {
			hashes[i] = s.first.Hash
		}
		entries, err := in.c.ReadEntries(ctx, gen, hashes)
		if err != nil {
			return fmt.Errorf("read redis: %w", err)
		}
		readAt := time.Now()
		cur := make(map[session.Hash]cache.Sampled, len(entries))
		for _, e := range entries {
			cur[e.Hash] = e
		}
		var (
			same   []suspect
			probes []pg.Probe
		)
		for _, s := range part {
			e, ok := cur[s.first.Hash]
			if !ok || !sameEntry(s.first, e, readAt.Sub(s.readAt)) {
				r.Resolved++
				continue
			}
			p, _ := probe(e) // the same value: it decodes and fits
			s.first = e
			same, probes = append(same, s), append(probes, p)
		}
		if len(probes) == 0 {
			continue
		}
		found, err := in.find(ctx, probes)
		if err != nil {
			return err
		}
		for i, s := range same {
			kind, diff := classify(in.o.Rule, s.first.Entry, found[i])
			if kind == "" {
				r.Resolved++
				continue
			}
			covered := wm.Source == in.identity && !wm.At.Before(s.seenAt)
			r.add(disagreement(kind, diff, s, found[i], readAt, covered, in.c.EntryKey(gen, s.first.Hash)))
		}
	}
	return nil
}

// find reads the rows of probes, on a primary only.
func (in *Inspector) find(ctx context.Context, probes []pg.Probe) ([]pg.Found, error) {
	found, err := in.rows.Find(ctx, probes)
	if err != nil {
		return nil, fmt.Errorf("read postgres: %w", err)
	}
	for _, f := range found {
		if f.Standby {
			return nil, ErrStandby
		}
	}
	return found, nil
}

// sameEntry reports whether b, read elapsed after a, is the entry a was:
// the same value, with no more time to live than a had left then (a
// re-fill starts a new life).
func sameEntry(a, b cache.Sampled, elapsed time.Duration) bool {
	if a.Value != b.Value {
		return false
	}
	return a.TTL < 0 || b.TTL < 0 || b.TTL <= a.TTL-elapsed+refillSlack
}

// probe is what finds e's row; false when e does not decode.
func probe(e cache.Sampled) (pg.Probe, bool) {
	if e.Entry == nil {
		return pg.Probe{}, false
	}
	p := pg.Probe{Hash: e.Hash}
	if !e.Entry.Negative {
		p.ID = e.Entry.Session.ID
	}
	return p, true
}

// classify says how entry e disagrees with row f ("" when every answer
// is the same), and what differs; both are judged at Postgres's clock.
func classify(rule session.Rule, e *cache.Entry, f pg.Found) (Kind, []string) {
	if e.Negative {
		// Invalid in the cache: a difference is a valid row.
		if diff := validation.AnswerDiff(rule, nil, f.Session, f.Now); len(diff) > 0 {
			return KindNegative, diff
		}
		return "", nil
	}
	diff := validation.AnswerDiff(rule, &e.Session, f.Session, f.Now)
	switch {
	case len(diff) == 0:
		return "", nil
	case diff[0] != "valid":
		return KindChanged, diff // both valid
	}
	// One of them is valid.
	if cacheValid, _ := validation.Judge(rule, &e.Session, session.Credential{}, f.Now); !cacheValid {
		return KindChanged, diff
	}
	switch {
	case f.Session == nil:
		return KindMissing, diff
	case f.Session.RevokedAt != nil:
		return KindRevoked, diff
	}
	return KindExpired, diff
}
