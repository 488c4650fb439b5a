package main_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// metric reads one sample of the invalidator's /metrics (-1: absent).
func (p *proc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// The active invalidator's sampled check counts what it compares, counts
// nothing while the cache agrees, and counts a stale entry planted behind
// its back (a revoked session cached valid) once.
func TestSampledCheckCountsADisagreement(t *testing.T) {
	bin := build(t)
	w := newWorld(t, testenv.SourceOf(t, testenv.OwnTable()))
	p := start(t, bin, append(w.env, "INSPECT_INTERVAL=100ms", "INSPECT_SAMPLE=20", "INSPECT_GRACE=200ms")...)
	const (
		checked  = "sessionguard_invalidator_inspect_checked_total"
		revoked  = `sessionguard_invalidator_inspect_disagreements_total{kind="revoked"}`
		negative = `sessionguard_invalidator_inspect_disagreements_total{kind="negative"}`
		errs     = "sessionguard_invalidator_inspect_errors_total"
	)
	testenv.WaitFor(t, 60*time.Second, "active and healthy", func() bool {
		h, code := p.health()
		return code == 200 && h.Role == "active" && h.Watermark != ""
	})
	for _, s := range []string{checked, revoked, negative, errs} {
		if v := p.metric(t, s); v < 0 {
			t.Fatalf("%s absent at start", s)
		}
	}
	token, _ := w.NewSession(t)
	w.Warm(t, token)
	testenv.WaitFor(t, 10*time.Second, "the entry checked a few times", func() bool { return p.metric(t, checked) >= 3 })
	if d, e := p.metric(t, revoked)+p.metric(t, negative), p.metric(t, errs); d != 0 || e != 0 {
		t.Fatalf("agreeing cache: %v disagreements, %v errors", d, e)
	}

	stale, id := w.NewSession(t)
	w.Warm(t, stale)
	row := w.Row(t, stale)
	w.Exec(t, w.src.Revoke, id)
	w.Refused(t, stale, 10*time.Second)
	w.Plant(t, stale, row) // once the invalidator's hold on fills has passed
	testenv.WaitFor(t, 10*time.Second, "the stale entry counted", func() bool { return p.metric(t, revoked) == 1 })
	time.Sleep(time.Second) // more rounds: counted once
	if v := p.metric(t, revoked); v != 1 {
		t.Fatalf("counted %v times", v)
	}
}

// With a table whose validators may apply SESSION_TIMEBOX (it has a
// creation time), the check, which does not know the validators' timeouts,
// skips negative entries: a validator caches one for a session past the
// timebox that the row, judged without it, has valid.
func TestSampledCheckSkipsNegativeEntriesTimeoutsMayExplain(t *testing.T) {
	bin := build(t)
	w := testenv.NewTableWorld(t, source.Mapping{Table: "app_sessions", Key: "token_sha", Format: source.FormatSHA256,
		User: "user_id", Created: "created_at", Expires: "expires_at"}, func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `CREATE TABLE app_sessions (token_sha bytea PRIMARY KEY, user_id text NOT NULL,
			created_at timestamptz NOT NULL, expires_at timestamptz)`)
		return err
	})
	slot := fmt.Sprintf("sg_cmd_timeouts_%d", time.Now().UnixNano()%1e9)
	p := start(t, bin, "DATABASE_URL="+w.URL, "REDIS_URL="+w.Redis.URL(), "REPLICATION_SLOT="+slot,
		"HEARTBEAT_INTERVAL=200ms", "STANDBY_POLL=200ms", "PUBLICATION="+testenv.TablePublication,
		"SESSION_SOURCE=table", "SESSION_TABLE=app_sessions", "SESSION_TABLE_KEY=token_sha", "SESSION_TABLE_USER=user_id",
		"SESSION_TABLE_CREATED=created_at", "SESSION_TABLE_EXPIRES=expires_at",
		"INSPECT_INTERVAL=100ms", "INSPECT_SAMPLE=20", "INSPECT_GRACE=200ms")
	const (
		checked  = "sessionguard_invalidator_inspect_checked_total"
		negative = `sessionguard_invalidator_inspect_disagreements_total{kind="negative"}`
	)
	testenv.WaitFor(t, 60*time.Second, "active and healthy", func() bool {
		h, code := p.health()
		return code == 200 && h.Role == "active" && h.Watermark != ""
	})
	insert := func(created time.Duration) string {
		token, err := session.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256([]byte(token))
		w.Exec(t, `INSERT INTO app_sessions VALUES ($1, 'u1', now() - $2::interval, now() + interval '1 day')`, h[:], created.String())
		return token
	}
	fresh, old := insert(0), insert(2*time.Hour)
	w.WatermarkFresh(t, 10*time.Second) // the INSERTs applied: they drop nothing after
	w.Plant(t, fresh, w.Row(t, fresh))
	w.Plant(t, old, nil) // as a validator with SESSION_TIMEBOX=1h caches it
	from := p.metric(t, checked)
	testenv.WaitFor(t, 20*time.Second, "a few more checks", func() bool { return p.metric(t, checked) >= from+5 })
	if v := p.metric(t, negative); v != 0 {
		t.Fatalf("the negative entry counted %v times", v)
	}
}
