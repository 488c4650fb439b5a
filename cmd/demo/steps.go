package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// The steps every walkthrough shares. Each prints what it does and what it
// saw, and fails loudly, naming its step, when the system does not behave.

// stepWatermark waits for the invalidator's first watermark: until then
// the validator answers from Postgres only.
func (d *demo) stepWatermark(ctx context.Context, api *client, n, total int) error {
	d.step(n, total, "Waiting for the invalidator's first watermark (the validator serves from Redis only while it is fresh)")
	start := time.Now()
	if err := api.waitFresh(ctx, 30*time.Second); err != nil {
		return fmt.Errorf("step %d: %w%s", n, err, d.invalidator.LogTail())
	}
	d.detail("fresh after %s: GET %s/api/health/redis says sessionCache.invalidator.fresh = true", ms(time.Since(start)), d.validator.URL)
	return nil
}

// waitInserts waits until the invalidator has applied want INSERTs in all.
// It drops any cache entry for a new row's key (a remembered "invalid"),
// and with it any fill in flight: waiting for that lets the next
// validation show a miss and then a hit rather than race it.
func (d *demo) waitInserts(ctx context.Context, want int64) (time.Duration, error) {
	start := time.Now()
	for {
		h, err := getInvalidatorHealth(ctx, d.invalidator.URL)
		if err == nil && h.Events.Inserts >= want {
			return time.Since(start), nil
		}
		if time.Since(start) > 10*time.Second {
			return 0, fmt.Errorf("the invalidator did not apply the INSERT within 10s (health error: %v)%s", err, d.invalidator.LogTail())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// validateTwice validates a fresh session's token twice: the first answer
// comes from Postgres (a cache miss), the second from Redis.
func (d *demo) validateTwice(ctx context.Context, api *client, token string) error {
	for i, want := range []string{"database", "cache"} {
		v, took, err := api.validate(ctx, token)
		if err != nil {
			return err
		}
		if v.status != http.StatusOK || !v.Valid || v.Source != want {
			return fmt.Errorf("validation %d: want 200 valid from %s, got %d valid=%v source=%q error=%q", i+1, want, v.status, v.Valid, v.Source, v.Error)
		}
		d.detail("POST /v1/sessions/validate  ->  200 valid, source=%-8s  %s", v.Source, ms(took))
	}
	return nil
}

// execThenRefused runs one statement that ends token's session, as any
// database writer would, and polls validate until the validator refuses
// the token. It returns how long that took after the commit.
func (d *demo) execThenRefused(ctx context.Context, api *client, token string, wantRows int64, sql string, args ...any) (time.Duration, int, error) {
	db, err := d.db(ctx)
	if err != nil {
		return 0, 0, err
	}
	tag, err := db.Exec(ctx, sql, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("plain SQL: %w", err)
	}
	committed := time.Now()
	if tag.RowsAffected() != wantRows {
		return 0, 0, fmt.Errorf("plain SQL changed %d rows, want %d", tag.RowsAffected(), wantRows)
	}
	took, polls, err := api.pollUntilRefused(ctx, token, committed, revokeBudget)
	if err != nil {
		return 0, polls, fmt.Errorf("%w%s", err, d.invalidator.LogTail())
	}
	return took, polls, nil
}

// stepInvalidator shows the invalidator's own view: its slot, its lag and
// the changes it applied.
func (d *demo) stepInvalidator(ctx context.Context, n, total int) error {
	d.step(n, total, "The invalidator's view: GET "+d.invalidator.URL+"/health")
	h, err := getInvalidatorHealth(ctx, d.invalidator.URL)
	if err != nil {
		return fmt.Errorf("step %d: %w", n, err)
	}
	d.detail("status=%s role=%s slot=%s publication=%s", h.Status, h.Role, h.Slot, h.Publication)
	d.detail("lag: %d bytes, %.3f s   confirmed flush %s / server WAL %s", h.Lag.Bytes, h.Lag.Seconds, h.ConfirmedFlushLsn, h.ServerWalLsn)
	d.detail("events: applied=%d inserts=%d updates=%d deletes=%d truncates=%d", h.Events.Applied, h.Events.Inserts, h.Events.Updates, h.Events.Deletes, h.Events.Truncates)
	if h.Status == "unhealthy" {
		return fmt.Errorf("step %d: the invalidator reports itself unhealthy", n)
	}
	return nil
}

// errStep names the step an error happened in.
func errStep(n int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("step %d: %w", n, err)
}
