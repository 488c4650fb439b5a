package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/sessionguard/sessionguard/internal/pg"
)

// Kind is how an entry disagrees with its row.
type Kind string

// Kinds of disagreement. All but KindNegative make a validator accept what
// Postgres refuses, or answer with other attributes.
const (
	KindMissing  Kind = "missing"  // valid in the cache; no row has its key (deleted, or re-keyed)
	KindRevoked  Kind = "revoked"  // valid in the cache; revoked in Postgres
	KindExpired  Kind = "expired"  // valid in the cache; past its expiry or a session timeout in Postgres
	KindChanged  Kind = "changed"  // answered otherwise: another user, expiry, assurance level, ...
	KindNegative Kind = "negative" // cached as invalid; valid in Postgres (refused until the entry expires)
)

// Kinds lists every kind.
func Kinds() []Kind { return []Kind{KindMissing, KindRevoked, KindExpired, KindChanged, KindNegative} }

// Reasons an entry was not compared (Report.Skipped).
const (
	SkipUndecodable = "undecodable"      // its value does not decode (validators answer from Postgres)
	SkipUnreadable  = "unreadable"       // not a string, or its id names no row of the table's type: no validator wrote it
	SkipNeedsScan   = "needs_scan"       // only a sequential scan finds its row (Options.IndexedOnly)
	SkipTimeouts    = "timeouts_unknown" // a negative entry, maybe for a session timeout (Options.RuleUnknown)
)

// Report is what one inspection found.
type Report struct {
	Generation   string         // the cache generation inspected ("": none, an empty cache)
	WatermarkAge *time.Duration // on Redis's clock; nil: no watermark
	// ForeignWatermark: the watermark vouches for another database or
	// table than the one read, so it covers no disagreement.
	ForeignWatermark bool
	Grace            time.Duration
	Checked          int            // entries compared with their rows
	Skipped          map[string]int // entries not compared, by reason
	// Resolved disagreed when first read and no longer on the re-check
	// (dropped, updated, re-filled or agreeing): changes in flight.
	Resolved      int
	Counts        map[Kind]int
	Disagreements []Disagreement
}

// Disagreement is an entry that disagreed with its row past the grace. It
// names no token: sessions by id (by its hash where the id is the secret
// key), entries by key hash.
type Disagreement struct {
	Kind      Kind
	RedisKey  string // <prefix>:<gen>:s:<key hash>
	KeyHash   string
	SessionID string   // "" for a negative entry of a row that has none
	Differs   []string // what a validator answers otherwise (validation.AnswerDiff)
	// Since is when Postgres says the session ended (revoked_at, or the
	// expiry it passed); zero when unknown.
	Since time.Time
	// For is how long it has been seen disagreeing, at least.
	For time.Duration
	// TTL is how long the entry lives on by itself; negative: no expiry.
	TTL time.Duration
	// Covered: the invalidator's watermark, vouching for the database
	// read, has passed the moment the disagreement was first seen, so it
	// vouches for having applied the change behind it. Not covered: the
	// invalidator is behind, down, or follows another database, and
	// validators stop trusting the cache past MAX_STALENESS.
	Covered bool
}

func (r *Report) add(d Disagreement) {
	r.Counts[d.Kind]++
	r.Disagreements = append(r.Disagreements, d)
}

// disagreement describes suspect s, re-read at now, against row f.
func disagreement(kind Kind, diff []string, s suspect, f pg.Found, now time.Time, covered bool, key string) Disagreement {
	d := Disagreement{Kind: kind, RedisKey: key, KeyHash: s.first.Hash.Hex(), Differs: diff,
		For: now.Sub(s.foundAt), TTL: s.first.TTL, Covered: covered}
	switch {
	case !s.first.Entry.Negative:
		d.SessionID = s.first.Entry.Session.ID
	case f.Session != nil:
		d.SessionID = f.Session.ID
	}
	if row := f.Session; row != nil {
		switch {
		case kind == KindRevoked && row.RevokedAt.Unix() > 0: // a flag reads as the epoch: when is unknown
			d.Since = *row.RevokedAt
		case kind == KindExpired && !row.ExpiresAt.IsZero() && !row.ExpiresAt.After(f.Now):
			d.Since = row.ExpiresAt
		}
	}
	return d
}

// Disagrees reports whether any entry disagreed past the grace.
func (r Report) Disagrees() bool { return len(r.Disagreements) > 0 }

type jsonDisagreement struct {
	Kind      Kind     `json:"kind"`
	SessionID string   `json:"session_id,omitempty"`
	KeyHash   string   `json:"key_hash"`
	RedisKey  string   `json:"redis_key"`
	Differs   []string `json:"differs"`
	Since     string   `json:"since,omitempty"`
	ForMS     int64    `json:"disagreeing_for_ms"`
	TTLMS     int64    `json:"ttl_left_ms"`
	Covered   bool     `json:"covered"`
}

// MarshalJSON writes the report as one document: durations in
// milliseconds, times in RFC 3339.
func (r Report) MarshalJSON() ([]byte, error) {
	doc := struct {
		Generation       string             `json:"generation"`
		WatermarkAgeMS   *int64             `json:"watermark_age_ms"`
		ForeignWatermark bool               `json:"watermark_foreign"`
		GraceMS          int64              `json:"grace_ms"`
		Checked          int                `json:"checked"`
		Skipped          map[string]int     `json:"skipped"`
		Resolved         int                `json:"resolved_in_grace"`
		Disagreeing      int                `json:"disagreeing"`
		Counts           map[Kind]int       `json:"counts"`
		Disagreements    []jsonDisagreement `json:"disagreements"`
	}{Generation: r.Generation, ForeignWatermark: r.ForeignWatermark, GraceMS: r.Grace.Milliseconds(), Checked: r.Checked, Skipped: r.Skipped,
		Resolved: r.Resolved, Disagreeing: len(r.Disagreements), Counts: map[Kind]int{}, Disagreements: []jsonDisagreement{}}
	if doc.Skipped == nil {
		doc.Skipped = map[string]int{}
	}
	if r.WatermarkAge != nil {
		ms := r.WatermarkAge.Milliseconds()
		doc.WatermarkAgeMS = &ms
	}
	for _, k := range Kinds() {
		doc.Counts[k] = r.Counts[k]
	}
	for _, d := range r.Disagreements {
		j := jsonDisagreement{Kind: d.Kind, SessionID: d.SessionID, KeyHash: d.KeyHash, RedisKey: d.RedisKey,
			Differs: d.Differs, ForMS: d.For.Milliseconds(), TTLMS: d.TTL.Milliseconds(), Covered: d.Covered}
		if !d.Since.IsZero() {
			j.Since = d.Since.UTC().Format(time.RFC3339Nano)
		}
		doc.Disagreements = append(doc.Disagreements, j)
	}
	return json.Marshal(doc)
}

// Advice is what to do about a disagreement of kind k.
func Advice(k Kind, covered bool) string {
	if k == KindNegative {
		return "a valid session is refused until the entry expires (ttl_left); nothing is let through. Drop the entry to end it sooner"
	}
	if covered {
		return "validators may answer from this entry: drop it now (the session row is untouched), then report an invalidator bug with its logs around the change"
	}
	return "the invalidator has not vouched past this change for this database (behind, down, or following another database: see its /health); validators stop trusting the cache after MAX_STALENESS. Drop the entry to be sure"
}

// WriteText writes the report for a person, one line per disagreement.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if r.Generation == "" {
		b.WriteString("The cache is empty (no generation): nothing to check.\n")
	} else {
		wm := "no watermark"
		if r.WatermarkAge != nil {
			wm = "watermark " + r.WatermarkAge.Round(time.Millisecond).String() + " old"
		}
		if r.ForeignWatermark {
			wm += ", of another database or table"
		}
		fmt.Fprintf(&b, "Checked %d cache entries of generation %s against Postgres (%s; grace %v).\n",
			r.Checked, r.Generation, wm, r.Grace)
	}
	if len(r.Skipped) > 0 {
		reasons := make([]string, 0, len(r.Skipped))
		for k, n := range r.Skipped {
			reasons = append(reasons, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(reasons)
		fmt.Fprintf(&b, "Not compared: %s.\n", strings.Join(reasons, ", "))
	}
	if r.Resolved > 0 {
		fmt.Fprintf(&b, "%d disagreed at first and were resolved within the grace (changes in flight).\n", r.Resolved)
	}
	if !r.Disagrees() {
		b.WriteString("All agree.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "%d disagree with Postgres past the grace:\n", len(r.Disagreements))
	for _, d := range r.Disagreements {
		id := d.SessionID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(&b, "  %-8s session %s  key %s  differs: %s", d.Kind, id, d.RedisKey, strings.Join(d.Differs, ","))
		if !d.Since.IsZero() {
			fmt.Fprintf(&b, "  since %s", d.Since.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, "  seen for %v", d.For.Round(time.Millisecond))
		if d.TTL >= 0 {
			fmt.Fprintf(&b, "  entry expires in %v", d.TTL.Round(time.Second))
		}
		fmt.Fprintf(&b, "  invalidator vouched past it: %s\n", map[bool]string{true: "yes", false: "no"}[d.Covered])
	}
	b.WriteString("What to do:\n")
	advised := map[string]bool{}
	for _, d := range r.Disagreements {
		if a := Advice(d.Kind, d.Covered); !advised[a] {
			advised[a] = true
			fmt.Fprintf(&b, "  - %s\n", a)
		}
	}
	b.WriteString("  (redis-cli DEL <key> drops one entry; see docs/inspect.md)\n")
	_, err := io.WriteString(w, b.String())
	return err
}
