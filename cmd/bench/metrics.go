package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// metrics.go reads what the servers counted during a scenario:
// pg_stat_statements (Postgres statements), INFO commandstats (Redis
// commands) and the validator's own /metrics (cache hits). Each is reset or
// read just before the measured run and read again just after it.

// pgCounts are the statements Postgres ran in the app database.
type pgCounts struct {
	lookups int64 // session lookups: the validator's and the bare SELECT's
	all     int64 // every statement, the bench's own statistics queries excepted
}

// lookupPatterns pick the session lookups out of pg_stat_statements: the
// validator's lookup (internal/pg, a LEFT JOIN of sessions on the key) and
// the bare SELECT baseline.
var lookupPatterns = []string{`%LEFT JOIN %sessions% s ON s."token_hash" = $1%`, baselineSelect}

func resetPG(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	return err
}

func readPG(ctx context.Context, pool *pgxpool.Pool) (pgCounts, error) {
	var c pgCounts
	err := pool.QueryRow(ctx, `
		SELECT coalesce(sum(calls) FILTER (WHERE query LIKE $1 OR query = $2), 0)::bigint,
		       coalesce(sum(calls), 0)::bigint
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND query NOT LIKE '%pg_stat_statements%'`, lookupPatterns[0], lookupPatterns[1]).Scan(&c.lookups, &c.all)
	if err != nil {
		return c, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	return c, nil
}

// redisCounts are the commands Redis ran, from INFO commandstats.
type redisCounts struct {
	all     int64 // every command, those run inside Lua scripts included
	scripts int64 // EVAL/EVALSHA calls (one round trip each, whatever they run)
	byName  map[string]int64
}

// roundTrips are the commands clients sent. commandstats also counts the
// commands a Lua script runs, with no way to tell them apart; the
// validator's validation path sends nothing but EVALSHA, so for a scripted
// server the script calls are its round trips, otherwise every command is
// one (the invalidator's few heartbeat commands counted either way).
func (c redisCounts) roundTrips(scripted bool) int64 {
	if scripted {
		return c.scripts
	}
	return c.all
}

func resetRedis(ctx context.Context, rdb *redis.Client) error {
	return rdb.ConfigResetStat(ctx).Err()
}

// benchOwn are the commands the bench itself sends to read the statistics.
var benchOwn = map[string]bool{"info": true, "config|resetstat": true, "ping": true}

func readRedis(ctx context.Context, rdb *redis.Client) (redisCounts, error) {
	s, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return redisCounts{}, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandstats(s), nil
}

// parseCommandstats reads lines like
// cmdstat_get:calls=2,usec=28,usec_per_call=14.00,rejected_calls=0,failed_calls=0
func parseCommandstats(s string) redisCounts {
	c := redisCounts{byName: map[string]int64{}}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if benchOwn[name] {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if k, v, _ := strings.Cut(f, "="); k == "calls" {
				n, _ := strconv.ParseInt(v, 10, 64)
				c.byName[name] += n
				c.all += n
				switch name {
				case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
					c.scripts += n
				}
			}
		}
	}
	return c
}

// validatorCounts are a validator's counters from /metrics.
type validatorCounts struct {
	validations, hits float64
}

func readValidator(ctx context.Context, c *http.Client, base string) (validatorCounts, error) {
	var v validatorCounts
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := c.Do(req)
	if err != nil {
		return v, fmt.Errorf("read %s/metrics: %w", base, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		val, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch name := line[:i]; {
		case strings.HasPrefix(name, "sessionguard_validations_total"):
			v.validations += val
		case name == "sessionguard_cache_hits_total":
			v.hits += val
		}
	}
	return v, sc.Err()
}

// validateSource asks POST /v1/sessions/validate where the answer came
// from ("cache" or "database"), for the set-up steps.
func validateSource(ctx context.Context, c *http.Client, base, token string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/sessions/validate", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		Valid  bool   `json:"valid"`
		Source string `json:"source"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	if !body.Valid {
		return "", fmt.Errorf("token refused (%d)", resp.StatusCode)
	}
	return body.Source, nil
}
