package main

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// sessionguardDemo is `make demo`: sessionguard's own sessions table, its
// sessions created through the admin API and revoked with plain SQL.
type sessionguardDemo struct{}

func (sessionguardDemo) title() string          { return "sessionguard local demo" }
func (sessionguardDemo) env() []string          { return nil }
func (sessionguardDemo) validatorEnv() []string { return nil }

func (sessionguardDemo) schema(ctx context.Context, d *demo, validatorBin string) error {
	printf(d.out, "\nApplying the schema: validator migrate\n")
	if err := d.migrate(ctx, validatorBin); err != nil {
		return err
	}
	d.detail("sessions table, replica identity and publication session_invalidation are in place")
	return nil
}

// walkthrough is the part a newcomer reads: each step prints what it does
// and what it saw, and fails loudly when the system does not behave.
func (sessionguardDemo) walkthrough(ctx context.Context, d *demo) error {
	const total = 6
	api := d.api()

	if err := d.stepWatermark(ctx, api, 1, total); err != nil {
		return err
	}

	d.step(2, total, "Create a session through the admin API")
	userID := uuid.NewString()
	token, sess, err := api.create(ctx, userID, "1h")
	if err != nil {
		return errStep(2, err)
	}
	d.detail("POST /v1/sessions {\"user_id\":%q,\"ttl\":\"1h\"}  ->  201", userID)
	d.detail("session id %s, token %s... (shown once; only its SHA-256 is stored)", sess.ID, token[:8])
	took, err := d.waitInserts(ctx, 1)
	if err != nil {
		return errStep(2, err)
	}
	d.detail("the invalidator read the INSERT from the WAL %s after the answer", ms(took))

	d.step(3, total, "Validate it twice: first from Postgres (cache miss), then from Redis (cache hit)")
	if err := d.validateTwice(ctx, api, token); err != nil {
		return errStep(3, err)
	}

	d.step(4, total, "Revoke it with plain SQL, behind the service's back, and poll validate until it is refused")
	d.detail("psql> UPDATE sessions SET revoked_at = now() WHERE id = '%s';", sess.ID)
	took, polls, err := d.execThenRefused(ctx, api, token, 1, `UPDATE sessions SET revoked_at = now() WHERE id = $1`, sess.ID)
	if err != nil {
		return errStep(4, err)
	}
	d.detail("committed; validate answered 401 invalid_token %s after the commit (%d polls)", ms(took), polls)
	d.detail("the invalidator read the UPDATE from the WAL and dropped the Redis entry; without it the cache would say valid for up to SESSION_CACHE_TTL")

	d.step(5, total, "Validate once more: refused, whoever asks")
	v, _, err := api.validate(ctx, token)
	if err != nil {
		return errStep(5, err)
	}
	if v.status != 401 {
		return fmt.Errorf("step 5: want 401, got %d", v.status)
	}
	d.detail("POST /v1/sessions/validate  ->  401 {\"valid\":false,\"error\":%q}", v.Error)

	return d.stepInvalidator(ctx, 6, total)
}

// printTryIt prints how to reach everything, with a fresh session to play
// with.
func (sessionguardDemo) printTryIt(ctx context.Context, d *demo) error {
	api := d.api()
	userID := uuid.NewString()
	token, sess, err := api.create(ctx, userID, "1h")
	if err != nil {
		return fmt.Errorf("create a session to try: %w", err)
	}
	v, i := d.validator.URL, d.invalidator.URL
	printf(d.out, `
Everything is running. Ctrl-C stops it all and removes the temporary files.

  validator    %s    log: %s
  invalidator  %s    log: %s
  postgres     %s
  redis        %s
  admin token  %s

A fresh session to try (user %s, session %s):

  export V=%s I=%s
  export ADMIN=%s
  export TOKEN=%s

  curl -s -X POST $V/v1/sessions/validate -H "Authorization: Bearer $TOKEN"
  curl -s -i $V/v1/auth --cookie "session=$TOKEN"
  curl -s -X POST $V/v1/sessions -H "Authorization: Bearer $ADMIN" -d '{"user_id":"%s","ttl":"24h"}'
  curl -s -X DELETE -i $V/v1/sessions/%s -H "Authorization: Bearer $ADMIN"
  curl -s -X DELETE $V/v1/users/%s/sessions -H "Authorization: Bearer $ADMIN"
  curl -s $V/api/health/redis
  curl -s $I/health
  curl -s $V/metrics | grep -v '^#' | head

  psql '%s' -c "UPDATE sessions SET revoked_at = now() WHERE user_id = '%s'"
  psql '%s' -c "TRUNCATE sessions"
`, v, d.validator.LogPath, i, d.invalidator.LogPath, d.dbURL, d.redis.URL(), d.adminToken,
		userID, sess.ID, v, i, d.adminToken, token, userID, sess.ID, userID, d.dbURL, userID, d.dbURL)
	return nil
}
