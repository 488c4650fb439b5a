package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
)

// client speaks the validator's HTTP API as documented in docs/api.md; the
// demo deliberately goes through HTTP like any other caller would.
type client struct {
	base  string
	admin string
	http  http.Client
}

type validateResponse struct {
	status  int
	Valid   bool             `json:"valid"`
	Source  string           `json:"source"`
	Error   string           `json:"error"`
	Session *session.Session `json:"session"`
}

type createResponse struct {
	Token   string           `json:"token"`
	Session *session.Session `json:"session"`
}

type redisHealth struct {
	Status       string `json:"status"`
	SessionCache struct {
		Enabled     bool `json:"enabled"`
		Invalidator struct {
			WatermarkAgeSeconds *float64 `json:"watermarkAgeSeconds"`
			Fresh               bool     `json:"fresh"`
		} `json:"invalidator"`
	} `json:"sessionCache"`
}

type invalidatorHealth struct {
	Status      string `json:"status"`
	Role        string `json:"role"`
	Slot        string `json:"slot"`
	Publication string `json:"publication"`
	Lag         struct {
		Bytes   int64   `json:"bytes"`
		Seconds float64 `json:"seconds"`
	} `json:"lag"`
	ConfirmedFlushLsn string `json:"confirmedFlushLsn"`
	ServerWalLsn      string `json:"serverWalLsn"`
	Events            struct {
		Applied   int64 `json:"applied"`
		Inserts   int64 `json:"inserts"`
		Updates   int64 `json:"updates"`
		Deletes   int64 `json:"deletes"`
		Truncates int64 `json:"truncates"`
	} `json:"events"`
}

// do sends one request and decodes a JSON answer into out (if not nil).
func (c *client) do(ctx context.Context, method, url, bearer string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: answer %d is not the documented JSON: %w: %.200s", method, url, resp.StatusCode, err, raw)
		}
	}
	return resp.StatusCode, nil
}

// create makes a session through the admin API and returns its token.
func (c *client) create(ctx context.Context, userID, ttl string) (string, *session.Session, error) {
	var out createResponse
	status, err := c.do(ctx, http.MethodPost, c.base+"/v1/sessions", c.admin,
		map[string]string{"user_id": userID, "ttl": ttl}, &out)
	if err != nil {
		return "", nil, err
	}
	if status != http.StatusCreated || out.Token == "" || out.Session == nil {
		return "", nil, fmt.Errorf("POST /v1/sessions: want 201 with a token and a session, got %d", status)
	}
	return out.Token, out.Session, nil
}

// validate asks whether token is valid and how long the round trip took.
func (c *client) validate(ctx context.Context, token string) (validateResponse, time.Duration, error) {
	var out validateResponse
	start := time.Now()
	status, err := c.do(ctx, http.MethodPost, c.base+"/v1/sessions/validate", token, nil, &out)
	out.status = status
	return out, time.Since(start), err
}

// pollUntilRefused validates token until the validator answers 401 and
// returns how long after since that happened. Any answer other than 200 or
// 401 is a failure, and so is still being valid after budget.
func (c *client) pollUntilRefused(ctx context.Context, token string, since time.Time, budget time.Duration) (time.Duration, int, error) {
	for polls := 1; ; polls++ {
		v, _, err := c.validate(ctx, token)
		if err != nil {
			return 0, polls, err
		}
		switch v.status {
		case http.StatusUnauthorized:
			return time.Since(since), polls, nil
		case http.StatusOK:
		default:
			return 0, polls, fmt.Errorf("validate answered %d (%s) while waiting for the revocation", v.status, v.Error)
		}
		if time.Since(since) > budget {
			return 0, polls, fmt.Errorf("the revoked session was still valid %v after the commit (last source: %s): the invalidator did not propagate it", budget, v.Source)
		}
		select {
		case <-ctx.Done():
			return 0, polls, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// waitFresh waits until the validator sees a fresh invalidator watermark,
// that is until it is willing to answer from the cache.
func (c *client) waitFresh(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var h redisHealth
	for {
		h = redisHealth{}
		status, err := c.do(ctx, http.MethodGet, c.base+"/api/health/redis", "", nil, &h)
		if err == nil && status == http.StatusOK && h.SessionCache.Invalidator.Fresh {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d, cache status %q, invalidator fresh=%v", status, h.Status, h.SessionCache.Invalidator.Fresh)
			}
			return fmt.Errorf("the validator never saw a fresh invalidator watermark within %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// authAnswer is /v1/auth's verdict: its status and the identity headers a
// proxy would pass on.
type authAnswer struct {
	status  int
	headers http.Header
}

// identityHeaders are the headers /v1/auth answers a valid request with.
var identityHeaders = []string{"X-User-Id", "X-Session-Id", "X-User-Role", "X-User-Aal", "X-Session-Expires-At"}

// forwardAuth asks GET /v1/auth about a request carrying the token as a
// Bearer header, or, when cookie is set, carrying only that cookie.
func (c *client) forwardAuth(ctx context.Context, bearer string, cookie *http.Cookie) (authAnswer, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/auth", nil)
	if err != nil {
		return authAnswer{}, 0, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return authAnswer{}, 0, fmt.Errorf("GET /v1/auth: %w", err)
	}
	took := time.Since(start)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return authAnswer{status: resp.StatusCode, headers: resp.Header}, took, nil
}

// validations counts the validator's answers by where they came from
// (sessionguard_validations_total summed by source: token, cache,
// database), and its Redis lookups (cache hits plus misses), read from
// GET /metrics.
type validations struct {
	bySource map[string]float64
	lookups  float64
}

var sourceLabel = regexp.MustCompile(`[{,]source="([^"]*)"`)

func (c *client) validations(ctx context.Context) (validations, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return validations{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return validations{}, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return validations{}, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return validations{}, fmt.Errorf("GET /metrics: %w", err)
	}
	return parseValidations(string(raw)), nil
}

// parseValidations reads the counters validations needs from the
// Prometheus text format.
func parseValidations(text string) validations {
	out := validations{bySource: map[string]float64{}}
	for _, line := range strings.Split(text, "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(series, "{")
		switch name {
		case "sessionguard_validations_total":
			if m := sourceLabel.FindStringSubmatch(series); m != nil {
				out.bySource[m[1]] += n
			}
		case "sessionguard_cache_hits_total", "sessionguard_cache_misses_total":
			out.lookups += n
		}
	}
	return out
}

func getInvalidatorHealth(ctx context.Context, base string) (invalidatorHealth, error) {
	var c client
	var h invalidatorHealth
	status, err := c.do(ctx, http.MethodGet, base+"/health", "", nil, &h)
	if err != nil {
		return h, err
	}
	if status != http.StatusOK && status != http.StatusServiceUnavailable {
		return h, fmt.Errorf("GET /health: unexpected status %d", status)
	}
	if h.Status == "" {
		return h, errors.New("GET /health: no status in the answer")
	}
	return h, nil
}
