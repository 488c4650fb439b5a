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
// master through failovers. A URL with cluster=true names a Redis Cluster
// (redis.ParseClusterURL): its host and any addr= parameters are seed
// nodes; the client follows the cluster's slots. Retries are off: the
// caller's circuit breaker and Postgres fallback decide what a failure
// means, and a retry would only add latency.
func NewClient(url string, o ClientOptions) (redis.UniversalClient, error) {
	if o.PoolSize <= 0 {
		o.PoolSize = 10
	}
	if o.MinIdleConns < 0 {
		o.MinIdleConns = 2
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	kind, url, err := urlKind(url)
	if err != nil {
		return nil, err
	}
	switch kind {
	case sentinelURL:
		fo, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		fo.PoolSize, fo.MinIdleConns = o.PoolSize, o.MinIdleConns
		fo.DialTimeout, fo.ReadTimeout, fo.WriteTimeout, fo.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
		fo.MaxRetries = -1
		fo.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(fo), nil
	case clusterURL:
		co, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		co.PoolSize, co.MinIdleConns = o.PoolSize, o.MinIdleConns
		co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
		// Redirects (MOVED, ASK) are followed; a failed command is not
		// retried, as on a single Redis.
		co.MaxRetries = -1
		co.ContextTimeoutEnabled = true
		cc := redis.NewClusterClient(co)
		cc.AddHook(reloadOnFailure{cc})
		return cc, nil
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

// reloadOnFailure has a cluster client reload its slot map whenever a
// command fails for want of its node (refused, reset, timed out), or a node
// answers that it does not hold the slot: go-redis otherwise keeps sending
// a lost master's slots to it for up to a minute after the cluster
// promoted its replica, and the validator's scripts, which name no KEYS,
// get no MOVED to follow, but an error. go-redis runs one reload at a time
// and folds the requests that come meanwhile into the next.
type reloadOnFailure struct{ cc *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.after(cmd.Err())
		}
		return err
	}
}

// after reloads after an error that is not Redis's reply (nor the caller's
// cancellation), or a reply that the slot is elsewhere or moving.
func (h reloadOnFailure) after(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	var reply redis.Error
	if !errors.As(err, &reply) || slotElsewhere(err) {
		h.cc.ReloadState(context.Background())
	}
}

// slotElsewhere reports a reply of a node that does not serve the slot of
// a script's keys now.
func slotElsewhere(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "non local key") || strings.HasPrefix(msg, "CLUSTERDOWN") ||
		strings.HasPrefix(msg, "TRYAGAIN") || strings.HasPrefix(msg, "MOVED")
}

type redisURLKind int

const (
	singleURL redisURLKind = iota
	sentinelURL
	clusterURL
)

// urlKind tells a single server's URL from a Sentinel group's (it has a
// master_name parameter) and a cluster's (cluster=true, which is taken out
// of the URL returned).
func urlKind(s string) (redisURLKind, string, error) {
	u, err := neturl.Parse(s)
	if err != nil {
		return 0, "", errors.New("parse REDIS_URL: not a URL")
	}
	q := u.Query()
	if !q.Has("cluster") {
		if q.Has("master_name") {
			return sentinelURL, s, nil
		}
		return singleURL, s, nil
	}
	if q.Get("cluster") != "true" {
		return 0, "", errors.New("parse REDIS_URL: cluster= takes true")
	}
	if q.Has("master_name") {
		return 0, "", errors.New("parse REDIS_URL: a URL names a Sentinel group (master_name=) or a cluster (cluster=true), not both")
	}
	for _, p := range []string{"read_only", "route_by_latency", "route_randomly"} {
		if q.Has(p) {
			return 0, "", fmt.Errorf("parse REDIS_URL: %s= sends reads to replicas, which lag behind the invalidator's writes; leave it out", p)
		}
	}
	q.Del("cluster")
	u.RawQuery = q.Encode()
	return clusterURL, u.String(), nil
}

// CheckURL parses a REDIS_URL as NewClient would, without connecting.
func CheckURL(s string) error {
	kind, s, err := urlKind(s)
	if err != nil {
		return err
	}
	switch kind {
	case sentinelURL:
		_, err = redis.ParseFailoverURL(s)
	case clusterURL:
		_, err = redis.ParseClusterURL(s)
	default:
		_, err = redis.ParseURL(s)
	}
	return err
}

// ServerInfo is what the health document shows of the Redis server.
type ServerInfo struct {
	Version    string
	UptimeSecs int64
	UsedMemory string // human form, e.g. "2.5M"
	TotalKeys  int64
}

// Info reads the server's version, uptime, memory and key count; on a
// cluster, one node's version, uptime and memory, and the keys of every
// master that holds a shard.
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
	if c.cluster {
		masters, err := c.masters(ctx)
		if err != nil {
			return si, fmt.Errorf("redis info: %w", err)
		}
		si.TotalKeys = 0
		for _, node := range masters {
			n, err := node.DBSize(ctx).Result()
			if err != nil {
				return si, fmt.Errorf("redis info: %w", err)
			}
			si.TotalKeys += n
		}
	}
	return si, nil
}

// CheckMode reports a REDIS_URL that names a node of a Redis Cluster
// without cluster=true: most of the cache's shards would be on other nodes.
// A Redis that does not answer is not reported.
func (c *Cache) CheckMode(ctx context.Context) error {
	if c.cluster {
		return nil
	}
	info, err := c.rdb.Info(ctx, "cluster").Result()
	if err == nil && strings.Contains(info, "cluster_enabled:1") {
		return errors.New("REDIS_URL names a node of a Redis Cluster: add cluster=true to it (and other nodes as addr= parameters)")
	}
	return nil
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
