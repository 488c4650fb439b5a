package cdc_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionguard/sessionguard/internal/source"
)

// TestRevocationAppliedOnlyOnceVisible, for a ByID table (Better Auth
// sign-out): RevokeByID carries no HoldFills, so the batch is applied before
// the commit is visible; the tombstone ends after LeaseTTL+FillHold (6s) and a
// validator that misses then refills from the old, still visible row.
func TestZZReviewByIDDeleteBeforeVisible(t *testing.T) {
	st := newStoreTest(t, source.BetterAuth, "")
	s := st.signIn(t, st.user(t), time.Time{})
	st.Warm(t, s.Presented)
	ctx := context.Background()
	st.Exec(t, `ALTER SYSTEM SET synchronous_standby_names = 'nobody'`)
	st.Exec(t, `SELECT pg_reload_conf()`)
	t.Cleanup(func() {
		st.Exec(t, `ALTER SYSTEM RESET synchronous_standby_names`)
		st.Exec(t, `SELECT pg_reload_conf()`)
	})
	st.commitsWait(t)
	writer, err := pgx.Connect(ctx, st.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := writer.Exec(ctx, `delete from "session" where "token" = $1`, s.Token)
		done <- err
	}()
	time.Sleep(7 * time.Second) // past the tombstone
	select {
	case err := <-done:
		t.Fatalf("did not wait: %v", err)
	default:
	}
	r := st.Validate(t, s.Presented)
	t.Logf("during: valid=%v source=%s", r.Valid, r.Source)
	st.Validate(t, s.Presented)
	st.Exec(t, `ALTER SYSTEM RESET synchronous_standby_names`)
	st.Exec(t, `SELECT pg_reload_conf()`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.WatermarkFresh(t, 10*time.Second)
	time.Sleep(3 * time.Second) // well past MAX_STALENESS
	st.WatermarkFresh(t, 10*time.Second)
	r = st.Validate(t, s.Presented)
	t.Logf("after: valid=%v source=%s", r.Valid, r.Source)
	if r.Valid {
		t.Fatalf("signed-out Better Auth session served valid from %s after the commit became visible", r.Source)
	}
}
