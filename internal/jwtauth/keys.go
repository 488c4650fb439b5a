package jwtauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Limits of a key set's reads.
const (
	jwksTimeout  = 5 * time.Second
	jwksMaxBytes = 1 << 20
	jwksRefresh  = 10 * time.Minute // http(s): read again this often
)

// keySet is a JSON Web Key Set read from a URL, parsed by keyfunc/jwkset.
// It is read again when a token names a key id the set lacks (rotation), at
// most once per allowance: the token that takes the allowance waits for the
// read (at most jwksTimeout), any other is refused at once, so tokens with
// made-up key ids cannot queue requests or flood the key server. An http(s)
// set is also read every jwksRefresh until the verifier's context ends.
// A failed read keeps the last keys.
type keySet struct {
	url   string
	fetch func(context.Context) ([]byte, error)
	log   *zap.Logger
	again *rate.Limiter

	mu sync.RWMutex
	kf keyfunc.Keyfunc
}

func newKeySet(ctx context.Context, u *url.URL, log *zap.Logger) (*keySet, error) {
	k := &keySet{url: u.String(), log: log}
	if u.Scheme == "file" {
		k.again = rate.NewLimiter(rate.Every(time.Second), 1)
		k.fetch = func(context.Context) ([]byte, error) { return os.ReadFile(u.Path) }
	} else {
		k.again = rate.NewLimiter(rate.Every(30*time.Second), 1)
		client := &http.Client{Timeout: jwksTimeout}
		k.fetch = func(ctx context.Context) ([]byte, error) { return get(ctx, client, k.url) }
	}
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	if u.Scheme != "file" {
		go k.refresh(ctx)
	}
	return k, nil
}

// get reads an http(s) key set.
func get(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes))
}

// load reads and parses the key set, replacing the keys held.
func (k *keySet) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	raw, err := k.fetch(ctx)
	if err != nil {
		return fmt.Errorf("jwtauth: read JWKS %s: %w", k.url, err)
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return fmt.Errorf("jwtauth: JWKS %s: %w", k.url, err)
	}
	k.mu.Lock()
	k.kf = kf
	k.mu.Unlock()
	return nil
}

// refresh reads the set every jwksRefresh until ctx ends.
func (k *keySet) refresh(ctx context.Context) {
	t := time.NewTicker(jwksRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.load(ctx); err != nil && ctx.Err() == nil {
				k.log.Warn("JWKS refresh failed; verifying with the keys last read", zap.Error(err))
			}
		}
	}
}

// keyfunc finds the token's key, reading the set again once when the token
// names a key it lacks and the allowance permits.
func (k *keySet) keyfunc(t *jwt.Token) (any, error) {
	k.mu.RLock()
	kf := k.kf
	k.mu.RUnlock()
	key, err := kf.Keyfunc(t)
	if err == nil || !k.again.Allow() {
		return key, err
	}
	if lerr := k.load(context.Background()); lerr != nil {
		k.log.Warn("JWKS read for an unknown key id failed; verifying with the keys last read", zap.Error(lerr))
		return nil, err
	}
	k.mu.RLock()
	kf = k.kf
	k.mu.RUnlock()
	return kf.Keyfunc(t)
}
