package cdc_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/cdc"
	"github.com/sessionguard/sessionguard/internal/httpapi"
	"github.com/sessionguard/sessionguard/internal/session"
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

// BenchmarkRevoke100k: 100,000 cached sessions revoked in one UPDATE, timed
// from the UPDATE's start until every effect is in Redis, against
// pg_recvlogical streaming the same kind of UPDATE live (pgoutput, proto 1,
// the same publication, a slot of its own) until it has received the
// commit. Each iteration measures both, each on a fresh database and Redis
// with 100,000 sessions inserted and cached, one streaming at a time, the
// order alternating from pair to pair (SG_FLOOD_PAIRS pairs, default 3).
// With SG_FLOOD_PROFILE=<dir>, the invalidator's timed windows are profiled
// (see floodProfile):
//
//	SG_BENCH=1 go test -run '^$' -bench Revoke100k -benchtime 1x ./internal/cdc/
func BenchmarkRevoke100k(b *testing.B) {
	benchGate(b)
	pairs := 3
	if n, err := strconv.Atoi(os.Getenv("SG_FLOOD_PAIRS")); err == nil && n > 0 {
		pairs = n
	}
	var ratios, tails []float64
	for i := 0; i < b.N*pairs; i++ {
		var ours, ref flood
		if i%2 == 0 {
			ref = revokeFloodRecvlogical(b)
			ours = revokeFloodConsumer(b)
		} else {
			ours = revokeFloodConsumer(b)
			ref = revokeFloodRecvlogical(b)
		}
		r, tr := ours.total.Seconds()/ref.total.Seconds(), ours.tail().Seconds()/ref.tail().Seconds()
		ratios, tails = append(ratios, r), append(tails, tr)
		b.Logf("pair %d: from the UPDATE's start invalidator %v, pg_recvlogical %v, ratio %.2f; after the UPDATE returned %v, %v, ratio %.2f",
			i, ours.total.Round(time.Millisecond), ref.total.Round(time.Millisecond), r,
			ours.tail().Round(time.Millisecond), ref.tail().Round(time.Millisecond), tr)
		b.ReportMetric(ours.total.Seconds(), "invalidator_s")
		b.ReportMetric(ref.total.Seconds(), "pg_recvlogical_s")
	}
	slices.Sort(ratios)
	slices.Sort(tails)
	b.ReportMetric(ratios[len(ratios)/2], "ratio_median")
	b.ReportMetric(ratios[len(ratios)-1], "ratio_max")
	b.ReportMetric(tails[len(tails)/2], "tail_ratio_median")
	b.Logf("ratios %.2f, after the UPDATE returned %.2f", ratios, tails)
}

// flood is one side's figures: from the UPDATE's start until done, and
// until the UPDATE returned (its own execution, the same work for both).
type flood struct{ total, update time.Duration }

func (f flood) tail() time.Duration { return f.total - f.update }

// floodEnv is a fresh env whose Redis client has the invalidator's default
// timeout (1s; the tests' 300ms is too short for this machine under a flood).
func floodEnv(b *testing.B) *env {
	b.Helper()
	e := newEnv(b, "")
	rdb, err := cache.NewClient(e.Redis.URL(), cache.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Close() })
	e.RDB, e.Cache = rdb.(*redis.Client), cache.New(rdb, cache.Options{StartsNamespace: true})
	return e
}

// floodRows is how many sessions BenchmarkRevoke100k revokes.
const floodRows = 100_000

// floodUser owns the sessions BenchmarkRevoke100k revokes.
const floodUser = "6f1c1d52-4c57-4a38-9d0e-0d5f1f0b9b11"

// floodSetup inserts floodRows sessions of floodUser (token "b-<i>"), runs
// wait (when set), then caches every one of them.
func floodSetup(b *testing.B, e *env, wait func()) {
	b.Helper()
	e.Exec(b, `INSERT INTO sessions (user_id, token_hash, expires_at)
		SELECT $1::uuid, sha256(convert_to('b-' || i, 'UTF8')), now() + interval '1 hour'
		FROM generate_series(1, $2::int) i`, floodUser, floodRows)
	if wait != nil {
		wait()
	}
	floodFill(b, e)
	e.Exec(b, `VACUUM ANALYZE sessions`)
}

// floodFill caches every flood session through the cache API (Lookup for a
// lease, then Fill), as validators' misses would, and checks the count.
func floodFill(b *testing.B, e *env) {
	b.Helper()
	ctx := context.Background()
	sess := &session.Session{ID: "00000000-0000-0000-0000-000000000001", UserID: floodUser,
		CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC()}
	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		failed atomic.Value
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > floodRows {
					return
				}
				var err error
				for try := 0; try < 5; try++ { // the client's timeout is short, the machine busy
					var l cache.Lookup
					l, err = e.Cache.Lookup(ctx, session.HashToken(fmt.Sprintf("b-%d", n)))
					if err == nil && l.Lease == "" {
						err = fmt.Errorf("no lease for b-%d", n)
					}
					if err == nil {
						var ok bool
						if ok, err = e.Cache.Fill(ctx, l, sess); err == nil && !ok {
							err = fmt.Errorf("fill of b-%d refused", n)
						}
					}
					if err == nil {
						break
					}
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if n := floodEntries(b, e); n != floodRows {
		b.Fatalf("%d entries cached, want %d", n, floodRows)
	}
}

// floodEntries counts the cache entries of the current generation.
func floodEntries(b *testing.B, e *env) int {
	b.Helper()
	ctx := context.Background()
	gen, err := e.Cache.Generation(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	iter := e.RDB.Scan(ctx, 0, e.Cache.Prefix()+":"+gen+":s:*", 10_000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}

// revokeFloodConsumer times the consumer: from the UPDATE's start until
// every revocation is applied, then checks that every entry is gone.
func revokeFloodConsumer(b *testing.B) flood {
	b.Helper()
	e := floodEnv(b)
	c, stop := e.consumer(b, nil, func(o *cdc.Options) {
		// Production's intervals (the tests' are shorter).
		o.HeartbeatInterval, o.StatusInterval = time.Second, 2*time.Second
		o.Logger = zap.NewNop()
	})
	defer stop()
	floodSetup(b, e, func() {
		testenv.WaitFor(b, 2*time.Minute, "inserts applied", func() bool { return c.Status().Inserts >= floodRows })
	})
	before := c.Status().Updates
	stopProfile := floodProfile(b, e)
	start := time.Now()
	e.Exec(b, `UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, floodUser)
	updated := time.Since(start)
	for c.Status().Updates-before < floodRows {
		if time.Since(start) > 5*time.Minute {
			b.Fatal("revocations not applied within 5 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	stopProfile()
	if n := floodEntries(b, e); n != 0 {
		b.Fatalf("%d entries left after the revocations were applied", n)
	}
	return flood{took, updated}
}

// floodProfile, with SG_FLOOD_PROFILE=<dir>, records a CPU profile, a block
// profile and an execution trace of this process, and Redis's command
// statistics, from now until the returned func is called, into dir.
func floodProfile(b *testing.B, e *env) (stop func()) {
	dir := os.Getenv("SG_FLOOD_PROFILE")
	if dir == "" {
		return func() {}
	}
	ctx := context.Background()
	n := profileSeq.Add(1)
	create := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d", name, n)))
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	cpu, tr := create("cpu.prof"), create("trace.out")
	if err := pprof.StartCPUProfile(cpu); err != nil {
		b.Fatal(err)
	}
	if err := trace.Start(tr); err != nil {
		b.Fatal(err)
	}
	runtime.SetBlockProfileRate(10_000) // one event per 10µs blocked
	_ = e.RDB.ConfigResetStat(ctx).Err()
	return func() {
		pprof.StopCPUProfile()
		trace.Stop()
		runtime.SetBlockProfileRate(0)
		blk := create("block.prof")
		_ = pprof.Lookup("block").WriteTo(blk, 0)
		for _, f := range []*os.File{cpu, tr, blk} {
			f.Close()
		}
		stats, _ := e.RDB.Info(ctx, "commandstats").Result()
		cs := create("redis-commandstats.txt")
		_, _ = cs.WriteString(stats)
		cs.Close()
	}
}

var profileSeq atomic.Int32

// revokeFloodRecvlogical times pg_recvlogical streaming the UPDATE live
// from a slot of its own to a file, as it is normally run: from the
// UPDATE's start until the file ends with the transaction's commit
// (polled every millisecond; the whole file is checked afterwards).
func revokeFloodRecvlogical(b *testing.B) flood {
	b.Helper()
	ctx := context.Background()
	e := floodEnv(b)
	floodSetup(b, e, nil)
	p := testenv.SharedPostgres(b)
	slot := e.slot + "_ref"
	e.Exec(b, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	out := filepath.Join(b.TempDir(), "out")
	dbname := e.URL[strings.LastIndex(e.URL, "/")+1 : strings.Index(e.URL, "?")]
	cmd := exec.Command(filepath.Join(p.BinDir(), "pg_recvlogical"),
		"-h", "127.0.0.1", "-p", fmt.Sprint(p.Port), "-U", "postgres", "-d", dbname,
		"--slot", slot, "--start", "-f", out, "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+testenv.DefaultPublication)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("pg_recvlogical: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
		testenv.WaitFor(b, 30*time.Second, "pg_recvlogical's walsender gone", func() bool {
			_, err := e.Pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
			return err == nil
		})
	}()
	active := func() bool {
		var active bool
		err := e.Pool.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		return err == nil && active
	}
	testenv.WaitFor(b, 30*time.Second, "pg_recvlogical streaming", active)
	var from uint64
	if err := e.Pool.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&from); err != nil {
		b.Fatal(err)
	}
	var f *os.File // pg_recvlogical creates it with its first write
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// endsWithCommit: the file ends with a Commit message (and its newline)
	// of a transaction that committed after from.
	tail := make([]byte, 27)
	endsWithCommit := func(size int64) bool {
		if size < 27 {
			return false
		}
		if _, err := f.ReadAt(tail, size-27); err != nil {
			return false
		}
		commit, end := binary.BigEndian.Uint64(tail[2:]), binary.BigEndian.Uint64(tail[10:])
		return tail[0] == 'C' && tail[1] == 0 && tail[26] == '\n' && commit >= from && end > commit && end-commit < 1<<20
	}
	start := time.Now()
	e.Exec(b, `UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, floodUser)
	updated := time.Since(start)
	var size int64
	for {
		if f == nil {
			f, _ = os.Open(out)
		}
		if st, err := f.Stat(); f != nil && err == nil && st.Size() != size {
			if size = st.Size(); endsWithCommit(size) {
				break
			}
		}
		select {
		case <-exited:
			b.Fatalf("pg_recvlogical exited\n%s", stderr.String())
		default:
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("pg_recvlogical: no commit within 5 minutes\n%s", stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	if n, err := readPgoutput(bufio.NewReader(io.LimitReader(f, size)), floodRows); err != nil || n != floodRows {
		b.Fatalf("pg_recvlogical's output: %d updates, %v", n, err)
	}
	return flood{took, updated}
}

// readPgoutput reads pg_recvlogical's output of pgoutput v1 (each message
// followed by a newline) until the commit of a transaction with at least
// want updates, and returns how many it had.
func readPgoutput(r *bufio.Reader, want int) (int, error) {
	skip := func(n int) error { _, err := r.Discard(n); return err }
	cstring := func() error { _, err := r.ReadBytes(0); return err }
	u16 := func() (int, error) {
		var x [2]byte
		_, err := io.ReadFull(r, x[:])
		return int(binary.BigEndian.Uint16(x[:])), err
	}
	tuple := func() error {
		n, err := u16()
		for i := 0; i < n && err == nil; i++ {
			var kind byte
			if kind, err = r.ReadByte(); err == nil && (kind == 't' || kind == 'b') {
				var l [4]byte
				if _, err = io.ReadFull(r, l[:]); err == nil {
					err = skip(int(binary.BigEndian.Uint32(l[:])))
				}
			}
		}
		return err
	}
	updates := 0
	for {
		t, err := r.ReadByte()
		if err != nil {
			return updates, err
		}
		switch t {
		case 'B':
			updates, err = 0, skip(20)
		case 'C':
			if err = skip(25); err == nil && updates >= want {
				return updates, nil
			}
		case 'R':
			if err = skip(4); err == nil {
				err = cstring()
			}
			if err == nil {
				err = cstring()
			}
			var n int
			if err == nil {
				err = skip(1)
			}
			if err == nil {
				n, err = u16()
			}
			for i := 0; i < n && err == nil; i++ {
				if err = skip(1); err == nil {
					if err = cstring(); err == nil {
						err = skip(8)
					}
				}
			}
		case 'I', 'U', 'D':
			if t == 'U' {
				updates++
			}
			var kind byte
			if err = skip(4); err == nil {
				kind, err = r.ReadByte()
			}
			if err == nil {
				err = tuple()
			}
			if err == nil && t == 'U' && kind != 'N' {
				if kind, err = r.ReadByte(); err == nil {
					err = tuple()
				}
			}
		default:
			return updates, fmt.Errorf("unexpected pgoutput message %q", t)
		}
		if err != nil {
			return updates, err
		}
		if nl, err := r.ReadByte(); err != nil || nl != '\n' {
			return updates, fmt.Errorf("no newline after a %q message: %q %v", t, nl, err)
		}
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
