package cdc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// Benchmarks for docs/invalidator.md; they need SG_BENCH=1 so CI stays fast:
//
//	SG_BENCH=1 go test -run '^$' -bench . -benchtime 1x ./internal/cdc/
//	SG_BENCH=1 go test -run '^$' -bench CommitToRefused -benchtime 1000x ./internal/cdc/

func benchGate(b *testing.B) {
	if os.Getenv("SG_BENCH") != "1" {
		b.Skip("set SG_BENCH=1 to run")
	}
}

// BenchmarkRevoke100k revokes 100,000 sessions in one statement and times
// the consumer against pg_recvlogical streaming the same transaction with the
// same plugin and publication (after the fact, from a second slot). Two
// ratios: from the commit (pgoutput sends a transaction only once it
// committed, but our walsender decoded it while the UPDATE ran, which
// pg_recvlogical's must do afterwards: favours us) and from the start of
// the UPDATE (counts the statement's own execution against us).
func BenchmarkRevoke100k(b *testing.B) {
	benchGate(b)
	const rows = 100_000
	for i := 0; i < b.N; i++ {
		e := newEnv(b, "")
		c, _ := e.consumer(b, nil)
		user := "6f1c1d52-4c57-4a38-9d0e-0d5f1f0b9b11"
		e.Exec(b, `INSERT INTO sessions (user_id, token_hash, expires_at)
			SELECT $1::uuid, sha256(convert_to('b-' || i, 'UTF8')), now() + interval '1 hour'
			FROM generate_series(1, $2::int) i`, user, rows)
		testenv.WaitFor(b, time.Minute, "inserts applied", func() bool { return c.Status().Inserts >= rows })
		// A second slot, created now, for pg_recvlogical to stream the update.
		refSlot := e.slot + "_ref"
		e.Exec(b, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, refSlot)
		before := c.Status().Updates
		var end string
		start := time.Now()
		e.Exec(b, `UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, user)
		committed := time.Now()
		if err := e.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
			b.Fatal(err)
		}
		testenv.WaitFor(b, 2*time.Minute, "all revocations applied", func() bool { return c.Status().Updates-before >= rows })
		ours := time.Since(committed) // pgoutput sends a transaction only once it committed
		withStatement := time.Since(start)

		p := testenv.SharedPostgres(b)
		out := filepath.Join(b.TempDir(), "out")
		dbname := e.URL[strings.LastIndex(e.URL, "/")+1 : strings.Index(e.URL, "?")]
		cmd := exec.Command(filepath.Join(p.BinDir(), "pg_recvlogical"),
			"-h", "127.0.0.1", "-p", fmt.Sprint(p.Port), "-U", "postgres", "-d", dbname,
			"--slot", refSlot, "--start", "--endpos", end, "-f", out, "--no-loop",
			"-o", "proto_version=1", "-o", "publication_names="+testenv.DefaultPublication)
		t0 := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pg_recvlogical: %v\n%s", err, o)
		}
		ref := time.Since(t0)
		st, _ := os.Stat(out)
		b.ReportMetric(ours.Seconds(), "invalidator_s")
		b.ReportMetric(ref.Seconds(), "pg_recvlogical_s")
		b.ReportMetric(ours.Seconds()/ref.Seconds(), "ratio")
		b.ReportMetric(withStatement.Seconds()/ref.Seconds(), "ratio_with_statement")
		b.Logf("100k revocations: invalidator %v from commit to all in Redis (%v counting the UPDATE itself), pg_recvlogical %v (%d bytes), ratio %.2f (%.2f)",
			ours, withStatement, ref, st.Size(), ours.Seconds()/ref.Seconds(), withStatement.Seconds()/ref.Seconds())
	}
}

// BenchmarkCommitToRefused measures, per revocation, the time from the
// UPDATE's commit to the first refusal by validation.Service.Validate with
// MAX_STALENESS 2s, with the entry cached before.
func BenchmarkCommitToRefused(b *testing.B) {
	benchGate(b)
	e := newEnv(b, "")
	e.consumer(b, nil)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		token, id := e.NewSession(b)
		e.Warm(b, token)
		b.StartTimer()
		e.Exec(b, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
		t0 := time.Now()
		for e.Validate(b, token).Valid {
			if time.Since(t0) > 5*time.Second {
				b.Fatal("not refused within 5s")
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, lat, "commit-to-refused")
}

// reportLatency reports p50 and p99 of lat as benchmark metrics and logs
// them with the maximum.
func reportLatency(b *testing.B, lat []time.Duration, what string) {
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99_ms")
	b.Logf("%d revocations: %s p50 %v p99 %v max %v", len(lat), what, q(0.5), q(0.99), lat[len(lat)-1])
}

// BenchmarkCommitToRefusedHTTP is BenchmarkCommitToRefused through the
// validator's HTTP API: per revocation, the time from the UPDATE's commit to
// the first 401 from POST /v1/sessions/validate, polled back to back over a
// keep-alive connection on loopback.
func BenchmarkCommitToRefusedHTTP(b *testing.B) {
	benchGate(b)
	e := newEnv(b, "")
	e.consumer(b, nil)
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.Service, DB: e.Store, Logger: zap.NewNop()}))
	defer srv.Close()
	refusedOverHTTP(b, srv, http.MethodPost, "/v1/sessions/validate", func() (string, string) { return e.NewSession(b) }, func(id string) {
		e.Exec(b, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, id)
	}, e.Warm, "commit-to-401 through HTTP")
}

// refusedOverHTTP measures b.N revocations through srv: each time a fresh
// session (signIn), warmed into the cache and answered 200 at path, is
// revoked, and the time from the commit to the first 401 is recorded.
func refusedOverHTTP(b *testing.B, srv *httptest.Server, method, path string, signIn func() (token, id string),
	revoke func(id string), warm func(testing.TB, string), what string) {
	client := srv.Client()
	status := func(token string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		token, id := signIn()
		warm(b, token)
		if code := status(token); code != http.StatusOK {
			b.Fatalf("warm token answered %d", code)
		}
		b.StartTimer()
		revoke(id)
		t0 := time.Now()
		for {
			code := status(token)
			if code == http.StatusUnauthorized {
				break
			}
			if code != http.StatusOK || time.Since(t0) > 5*time.Second {
				b.Fatalf("answered %d %v after the revocation", code, time.Since(t0))
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, lat, what)
}
