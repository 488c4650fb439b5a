package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// revoke.go measures commit-to-refused: a session answered from the cache is
// revoked with a plain SQL UPDATE (as anyone with database access would), and
// an outside client polls the validator until it refuses the token. The time
// runs from the moment the commit returned to the moment the refusal arrived.

// pollInterval is the poller's pause between two validations; with the
// round trip it bounds the resolution of one measurement (about a
// millisecond).
const pollInterval = 500 * time.Microsecond

// refuseBudget is how long a revocation may take before it counts as a
// failure (MAX_STALENESS is 2s: anything near it means the invalidator did
// not apply the change and the validator went by the watermark's age).
const refuseBudget = 5 * time.Second

// revocations is one commit-to-refused run.
type revocations struct {
	load     int             // background validations per second, 0: idle
	samples  []time.Duration // sorted
	failures int             // not refused within refuseBudget
	polls    int             // validations the poller sent, in all
	bg       result          // the background load's own latencies
}

func (r revocations) quantile(q float64) time.Duration {
	return result{lat: r.samples}.quantile(q)
}

// commitToRefused revokes len(tokens) sessions one after another while
// load validations per second of the warm set run against the same
// validator.
func commitToRefused(ctx context.Context, e *env, tokens []string, load int) (revocations, error) {
	r := revocations{load: load}
	var bgDone chan result
	stop := func() {}
	if load > 0 {
		bctx, cancel := context.WithCancel(ctx)
		stop = cancel
		bgDone = make(chan result, 1)
		url, tok := e.validator.URL, warmTokens(e)
		go func() {
			bgDone <- openLoop(bctx, load, 0, func(ctx context.Context, i int) bool {
				return authRequest(ctx, e.client, url, tok(i), http.StatusOK)
			})
		}()
		pause(ctx, time.Second) // the load reaches its rate first
	}
	err := func() error {
		for _, tok := range tokens {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := cached(ctx, e, tok); err != nil {
				return err
			}
			_, err := e.pool.Exec(ctx, `UPDATE sessions SET revoked_at = now() WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, tok)
			if err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			committed := time.Now()
			for {
				st := authStatus(ctx, e.client, e.validator.URL, tok)
				r.polls++
				took := time.Since(committed)
				if st == http.StatusUnauthorized {
					r.samples = append(r.samples, took)
					break
				}
				if took > refuseBudget {
					r.failures++
					break
				}
				time.Sleep(pollInterval)
			}
			pause(ctx, 5*time.Millisecond)
		}
		return nil
	}()
	stop()
	if bgDone != nil {
		r.bg = <-bgDone
	}
	slices.Sort(r.samples)
	return r, err
}

// cached validates tok until the validator answers it from the cache: the
// revocation then has an entry to drop, the case the invalidator exists for.
func cached(ctx context.Context, e *env, tok string) error {
	var last string
	for range 50 {
		src, err := validateSource(ctx, e.client, e.validator.URL, tok)
		if err != nil {
			return fmt.Errorf("validate before revoking: %w", err)
		}
		if src == "cache" {
			return nil
		}
		last = src
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("a token to revoke was never answered from the cache (last source %q)", last)
}
