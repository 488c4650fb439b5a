package main

import (
	"context"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// load.go is the open-loop load generator: requests are scheduled at fixed
// intervals (rate per second) whatever the server does, and each one's
// latency runs from its scheduled send time, not from when it was actually
// sent. A server that stalls for 100 ms at 2,000/s thus shows 200 requests
// that waited up to 100 ms, instead of the one slow request a closed loop
// (send, wait, send) would record (coordinated omission).

// maxInFlight bounds the requests outstanding at once. When it is reached
// the generator waits, and the requests it could not send on time count
// their wait in their latency.
const maxInFlight = 2048

// requestTimeout is how long one request may take before it counts as an
// error (with this latency).
const requestTimeout = 10 * time.Second

// result is one open-loop run.
type result struct {
	rate      int           // offered, per second
	sent      int           // requests scheduled and sent
	errors    int           // transport errors and unexpected statuses
	elapsed   time.Duration // first scheduled send to last answer
	lat       []time.Duration
	maxBehind time.Duration // how late the generator itself sent its latest request
}

// throughput is answered requests per second, errors excluded.
func (r result) throughput() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.sent-r.errors) / r.elapsed.Seconds()
}

// quantile of the sorted latencies (nearest rank), q in [0, 1].
func (r result) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.lat)))) - 1
	i = max(0, min(i, len(r.lat)-1))
	return r.lat[i]
}

// request sends request i and reports whether its answer was the expected
// one.
type request func(ctx context.Context, i int) bool

// openLoop sends rate requests per second for d (or until ctx ends, if
// d is 0) and waits for the last answers.
func openLoop(ctx context.Context, rate int, d time.Duration, do request) result {
	interval := time.Second / time.Duration(rate)
	n := math.MaxInt
	if d > 0 {
		n = int(d / interval)
	}
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, min(n, 1<<20))
		errs   int
		last   time.Time
		wg     sync.WaitGroup
		sem    = make(chan struct{}, maxInFlight)
		behind time.Duration
	)
	start := time.Now().Add(5 * time.Millisecond)
	sent := 0
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			break
		}
		if late := time.Since(at); late > behind {
			behind = late
		}
		sem <- struct{}{}
		sent++
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			ok := do(rctx, i)
			cancel()
			end := time.Now()
			<-sem
			mu.Lock()
			lat = append(lat, end.Sub(at))
			if !ok {
				errs++
			}
			if end.After(last) {
				last = end
			}
			mu.Unlock()
		}(i, at)
	}
	wg.Wait()
	slices.Sort(lat)
	r := result{rate: rate, sent: sent, errors: errs, lat: lat, maxBehind: behind}
	if !last.IsZero() {
		r.elapsed = last.Sub(start)
	}
	return r
}

// newClient is the HTTP client of the load: keep-alive connections, enough
// of them idle for the highest rate's concurrency.
func newClient() *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			MaxIdleConns:        maxInFlight,
			MaxIdleConnsPerHost: maxInFlight,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// authRequest is GET base/v1/auth with the token as a Bearer token; ok when
// the status is want.
func authRequest(ctx context.Context, c *http.Client, base, token string, want int) bool {
	return authStatus(ctx, c, base, token) == want
}

// authStatus is the status of GET base/v1/auth with the token, 0 on a
// transport error.
func authStatus(ctx context.Context, c *http.Client, base, token string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/auth", nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
