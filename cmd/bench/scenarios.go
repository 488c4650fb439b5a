package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// scenarios.go says what is measured: one entry per row of the report.

// counter says where a scenario's hit rate comes from.
type counter int

const (
	counterNone      counter = iota // no cache: no hit rate
	counterValidator                // the validator's sessionguard_cache_hits_total / validations
	counterMinimal                  // the minimal handler's GETs that found an entry
)

type scenario struct {
	key      string // short name, for -scenarios
	name     string // the report's row label
	what     string // one sentence for the report
	baseline bool
	target   func(e *env) string // base URL of the server under test
	// tokens returns the token of each request of one run.
	tokens  func(e *env) func(i int) string
	prepare func(ctx context.Context, e *env, sc *scenario) error // once, before its first run
	hits    counter
	// scripted: the server under test talks to Redis in Lua scripts only,
	// so its round trips are the script calls (see redisCounts.roundTrips).
	scripted bool
}

var scenarios = []scenario{
	{
		key: "db", name: "database only",
		what:   "the validator with `SESSION_CACHE_ENABLED=false`: every validation is one Postgres lookup",
		target: func(e *env) string { return e.validatorDB.URL },
		tokens: warmTokens, hits: counterValidator, scripted: true,
	},
	{
		key: "cold", name: "cache cold",
		what:   "the validator with its Redis cache and no near cache (`NEAR_CACHE_SIZE=0`): every request a token never validated before, so a Redis miss with a fill lease, a Postgres lookup and a fill",
		target: func(e *env) string { return e.validator.URL },
		tokens: coldTokens, hits: counterValidator, scripted: true,
	},
	{
		key: "warm", name: "warm from Redis",
		what:   "the same validator, every token of the warm set validated once beforehand: each request one Redis round trip (the lookup script)",
		target: func(e *env) string { return e.validator.URL },
		tokens: warmTokens, prepare: warmUp, hits: counterValidator, scripted: true,
	},
	{
		key: "near", name: "warm from the near cache",
		what:   "a validator with its near cache (the default `NEAR_CACHE_SIZE`, here sized for the warm set), every warm token validated twice beforehand (Redis, then the near cache's copy): no Redis round trip",
		target: func(e *env) string { return e.validatorNear.URL },
		tokens: warmTokens, prepare: warmUp, hits: counterValidator, scripted: true,
	},
	{
		key: "minimal", name: "baseline: minimal Redis handler", baseline: true,
		what:   "a minimal Go HTTP handler in the bench process: hash the bearer token, one go-redis GET on the same Redis, 200 or 401",
		target: func(e *env) string { return e.baselines.minimalURL },
		tokens: warmTokens, hits: counterMinimal,
	},
	{
		key: "select", name: "baseline: bare indexed SELECT", baseline: true,
		what:   "a minimal Go HTTP handler in the bench process: hash the bearer token, one `SELECT ... WHERE token_hash = $1` on the same Postgres",
		target: func(e *env) string { return e.baselines.selectURL },
		tokens: warmTokens, hits: counterNone,
	},
}

// warmTokens picks tokens of the warm set at random.
func warmTokens(e *env) func(int) string {
	w := e.tokens.warm
	return func(int) string { return w[rand.IntN(len(w))] }
}

// coldTokens hands out each cold token once, across all rates.
func coldTokens(e *env) func(int) string {
	c := e.tokens.cold
	return func(int) string {
		// Should the set run out (it is sized from the flags), wrap: the
		// hit rate column then shows it.
		return c[int(e.tokens.coldNext.Add(1)-1)%len(c)]
	}
}

// warmUp validates every token of the warm set on the scenario's validator
// (twice: the second copies a near cache's entries from Redis), then checks
// that one answers from the cache.
func warmUp(ctx context.Context, e *env, sc *scenario) error {
	url := sc.target(e)
	for range 2 {
		if err := warmOnce(ctx, e, url); err != nil {
			return err
		}
	}
	src, err := validateSource(ctx, e.client, url, e.tokens.warm[len(e.tokens.warm)/2])
	if err != nil {
		return fmt.Errorf("warm-up check: %w", err)
	}
	if src != "cache" {
		return fmt.Errorf("warm-up check: a warm token was answered from %q, not the cache", src)
	}
	return nil
}

// warmOnce validates every token of the warm set once at url.
func warmOnce(ctx context.Context, e *env, url string) error {
	toks := e.tokens.warm
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(toks) || ctx.Err() != nil {
					return
				}
				if authStatus(ctx, e.client, url, toks[i]) != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("warm-up: %d of %d validations failed", n, len(toks))
	}
	return nil
}

// cell is one scenario at one rate.
type cell struct {
	sc      *scenario
	rate    int
	round   int
	res     result
	pg      pgCounts
	redis   redisCounts
	hitRate float64 // fraction; -1 when the scenario has none
}

// runCell warms the scenario up at its rate (unmeasured), resets the
// servers' statistics, runs it for cfg.duration and reads them back.
func runCell(ctx context.Context, e *env, cfg config, sc *scenario, rate int) (cell, error) {
	c := cell{sc: sc, rate: rate, hitRate: -1}
	url, tok := sc.target(e), sc.tokens(e)
	do := func(ctx context.Context, i int) bool {
		return authRequest(ctx, e.client, url, tok(i), http.StatusOK)
	}
	if cfg.warmup > 0 {
		openLoop(ctx, rate, cfg.warmup, do)
	}
	if err := resetPG(ctx, e.pool); err != nil {
		return c, err
	}
	if err := resetRedis(ctx, e.rdb); err != nil {
		return c, err
	}
	var v0 validatorCounts
	var err error
	if sc.hits == counterValidator {
		if v0, err = readValidator(ctx, e.client, url); err != nil {
			return c, err
		}
	}
	f0, a0 := e.baselines.found.Load(), e.baselines.asked.Load()

	c.res = openLoop(ctx, rate, cfg.duration, do)
	if ctx.Err() != nil {
		return c, ctx.Err()
	}

	if c.pg, err = readPG(ctx, e.pool); err != nil {
		return c, err
	}
	if c.redis, err = readRedis(ctx, e.rdb); err != nil {
		return c, err
	}
	switch sc.hits {
	case counterValidator:
		v1, err := readValidator(ctx, e.client, url)
		if err != nil {
			return c, err
		}
		if n := v1.validations - v0.validations; n > 0 {
			c.hitRate = (v1.hits - v0.hits) / n
		}
	case counterMinimal:
		if n := e.baselines.asked.Load() - a0; n > 0 {
			c.hitRate = float64(e.baselines.found.Load()-f0) / float64(n)
		}
	}
	return c, nil
}

// pause lets the machine settle between runs (connections closing, the
// invalidator's and Postgres's background work).
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
