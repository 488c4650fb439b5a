package cache

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientOptions tune the go-redis client.
type ClientOptions struct {
	PoolSize     int           // default 10
	MinIdleConns int           // idle connections kept open; 0 keeps none, negative means 2
	Timeout      time.Duration // dial, read and write timeout; default 1s
}

// NewClient parses a redis:// or rediss:// (TLS) URL and returns a client.
// A URL with a master_name parameter names a Redis Sentinel group, in
// go-redis's form (redis.ParseFailoverURL): its host and any addr=
// parameters are sentinels, its user and password the sentinels', and
// username= and password= parameters the master's; the client follows the
// master through failovers. Retries are off: the caller's circuit breaker
// and Postgres fallback decide what a failure means, and a retry would only
// add latency.
func NewClient(url string, o ClientOptions) (*redis.Client, error) {
	if o.PoolSize <= 0 {
		o.PoolSize = 10
	}
	if o.MinIdleConns < 0 {
		o.MinIdleConns = 2
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if sentinel, err := IsSentinelURL(url); err != nil {
		return nil, err
	} else if sentinel {
		fo, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		fo.PoolSize, fo.MinIdleConns = o.PoolSize, o.MinIdleConns
		fo.DialTimeout, fo.ReadTimeout, fo.WriteTimeout, fo.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
		fo.MaxRetries = -1
		fo.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(fo), nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	opts.PoolSize = o.PoolSize
	opts.MinIdleConns = o.MinIdleConns
	opts.DialTimeout = o.Timeout
	opts.ReadTimeout = o.Timeout
	opts.WriteTimeout = o.Timeout
	opts.PoolTimeout = o.Timeout
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// IsSentinelURL reports whether a Redis URL names a Sentinel group (it has
// a master_name parameter).
func IsSentinelURL(s string) (bool, error) {
	u, err := neturl.Parse(s)
	if err != nil {
		return false, errors.New("parse REDIS_URL: not a URL")
	}
	return u.Query().Has("master_name"), nil
}

// ServerInfo is what the health document shows of the Redis server.
type ServerInfo struct {
	Version    string
	UptimeSecs int64
	UsedMemory string // human form, e.g. "2.5M"
	TotalKeys  int64
}

// Info reads the server's version, uptime, memory and key count.
func (c *Cache) Info(ctx context.Context) (ServerInfo, error) {
	var si ServerInfo
	pipe := c.rdb.Pipeline()
	info := pipe.Info(ctx, "server", "memory")
	size := pipe.DBSize(ctx)
	if _, err := pipe.Exec(ctx); err != nil {
		return si, fmt.Errorf("redis info: %w", err)
	}
	for _, line := range strings.Split(info.Val(), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "redis_version":
			si.Version = v
		case "uptime_in_seconds":
			si.UptimeSecs, _ = strconv.ParseInt(v, 10, 64)
		case "used_memory_human":
			si.UsedMemory = v
		}
	}
	si.TotalKeys = size.Val()
	return si, nil
}

// ProbeTimings are round-trip times of a health probe.
type ProbeTimings struct {
	Ping, Set, Get time.Duration
}

// Probe measures PING, SET and GET on a probe key of its own.
func (c *Cache) Probe(ctx context.Context) (ProbeTimings, error) {
	var p ProbeTimings
	key := c.o.Prefix + ":health:probe"
	t := time.Now()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return p, fmt.Errorf("redis ping: %w", err)
	}
	p.Ping = time.Since(t)
	t = time.Now()
	if err := c.rdb.Set(ctx, key, strconv.FormatInt(t.UnixMilli(), 10), 10*time.Second).Err(); err != nil {
		return p, fmt.Errorf("redis set: %w", err)
	}
	p.Set = time.Since(t)
	t = time.Now()
	if err := c.rdb.Get(ctx, key).Err(); err != nil {
		return p, fmt.Errorf("redis get: %w", err)
	}
	p.Get = time.Since(t)
	return p, nil
}
