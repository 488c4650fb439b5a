package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// aclClients returns a client for each documented Redis user on r.
func aclClients(t *testing.T, r *testenv.Redis) (validator, invalidator *redis.Client) {
	t.Helper()
	vURL, iURL := testenv.LoadACL(t, r)
	client := func(url string) *redis.Client {
		o, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		o.MaxRetries = -1
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return client(vURL), client(iURL)
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustDeny(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "no permissions") &&
		!strings.Contains(err.Error(), "can't access") && !strings.Contains(err.Error(), "can't run this command") {
		t.Fatalf("%s as the validator: %v, want a permission error", what, err)
	}
}

// Under the documented ACL users, each process can do all it does, and the
// validator can write neither the watermark nor the generation, by command
// or by script: a compromised validator host cannot vouch for the cache.
func TestACLUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testenv.NewRedis(t)
	vrdb, irdb := aclClients(t, r)
	admin := testenv.RedisClient(t, r)
	v, inv := cache.New(vrdb, cache.Options{}), cache.New(irdb, cache.Options{})

	tok, id := aclAllowed(t, v, inv, func() *redis.PubSub { return vrdb.Subscribe(ctx, v.Prefix()+":inv") })
	gen, err := v.Generation(ctx)
	mustOK(t, "validator Generation", err)

	// What the validator must never do. The keys are read back afterwards
	// through the default user.
	before := func() map[string]string {
		m := map[string]string{}
		keys, err := admin.Keys(ctx, "*").Result()
		mustOK(t, "keys", err)
		for _, k := range keys {
			if typ, _ := admin.Type(ctx, k).Result(); typ == "string" {
				m[k] = admin.Get(ctx, k).Val()
			}
		}
		return m
	}
	mustOK(t, "tombstone", admin.Set(ctx, "sg:"+gen+":t:"+id.Hex(), "1", time.Minute).Err())
	mustOK(t, "srv", admin.Set(ctx, "sg:srv", "another-run-id", 0).Err())
	snapshot := before()
	_, err = v.SetWatermark(ctx, cache.Watermark{At: time.Now().Add(time.Hour), Source: "db"})
	mustDeny(t, "SetWatermark", err)
	_, err = v.Flush(ctx, "")
	mustDeny(t, "Flush", err)
	_, err = v.Apply(ctx, []cache.Op{cache.Drop(tok)})
	mustDeny(t, "Apply", err)
	_, err = v.MarkFlushPending(ctx)
	mustDeny(t, "MarkFlushPending", err)
	mustDeny(t, "ScheduleRecheck", v.ScheduleRecheck(ctx, 1, 1))
	_, err = v.FlushIfServerChanged(ctx)
	mustDeny(t, "FlushIfServerChanged", err)
	for _, cmd := range [][]any{
		{"SET", "sg:wm", "99999999999999|db|"},
		{"SET", "sg:gen", "gmine"},
		{"DEL", "sg:gen"},
		{"DEL", "sg:wm"},
		{"DEL", "sg:" + gen + ":t:" + id.Hex()},
		{"SET", "sg:flushpending", "x"},
		{"SET", "sg:recheck", "1|1"},
		{"SET", "sg:srv", "x"},
		{"SET", "other:key", "x"},
		{"GET", "other:key"},
		{"RENAME", "sg:wm", "sg:x:s:y"},
		{"EXPIRE", "sg:gen", "1"},
		{"EVAL", "return redis.call('SET', ARGV[1], ARGV[2])", "0", "sg:wm", "99999999999999|db|"},
		{"EVAL", "return redis.call('DEL', ARGV[1])", "0", "sg:gen"},
		{"EVAL", "return redis.call('GET', KEYS[1])", "1", "sg:gen"},
		{"FLUSHALL"},
		{"FLUSHDB"},
		{"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"},
		{"ACL", "SETUSER", "sg-validator", "~*"},
		{"SWAPDB", "0", "1"},
		{"KEYS", "*"},
		{"SCRIPT", "FLUSH"},
		{"FUNCTION", "FLUSH"},
		{"SHUTDOWN", "NOSAVE"},
		{"CLIENT", "KILL", "USER", "sg-invalidator"},
		{"CLIENT", "PAUSE", "1000", "WRITE"},
		{"CLIENT", "LIST"},
		{"SORT", "sg:" + gen + ":i:" + id.Hex(), "ALPHA", "STORE", "sg:wm"},
		{"COPY", "sg:" + gen + ":s:" + tok.Hex(), "sg:wm", "REPLACE"},
		{"UNLINK", "sg:gen"},
		{"PUBLISH", "sg:inv", "999|w|99999999999999|db|"},
		{"EVAL", "return redis.call('PUBLISH', 'sg:inv', ARGV[1])", "0", "999|w|99999999999999|db|"},
		{"INCR", "sg:invseq"},
	} {
		mustDeny(t, fmt.Sprint(cmd...), vrdb.Do(ctx, cmd...).Err())
	}
	after := before()
	for k, was := range snapshot {
		if !strings.Contains(k, ":s:") && !strings.Contains(k, ":l:") && after[k] != was {
			t.Errorf("%s changed from %q to %q under the validator's user", k, was, after[k])
		}
	}
	if len(after) != len(snapshot) {
		t.Errorf("keys before %d, after %d", len(snapshot), len(after))
	}
}

// aclAllowed does, as each process's user, everything that process does,
// and fails the test on any refusal. It returns a token it filled and the
// row id it indexed.
func aclAllowed(t *testing.T, v, inv *cache.Cache, subscribe func() *redis.PubSub) (tok, id session.Hash) {
	t.Helper()
	ctx := context.Background()
	// The invalidator starts the namespace and vouches for it.
	_, err := inv.FlushIfServerChanged(ctx)
	mustOK(t, "invalidator FlushIfServerChanged", err)
	_, err = inv.SetWatermark(ctx, cache.Watermark{At: time.Now(), Source: "db"})
	mustOK(t, "invalidator SetWatermark", err)

	// The validator looks up, fills (plain and indexed), hits, probes.
	tok, other := session.HashToken("acl-1"), session.HashToken("acl-2")
	id = session.HashToken("acl-row")
	l, err := v.Lookup(ctx, tok)
	mustOK(t, "validator Lookup", err)
	ok, err := v.Fill(ctx, l, validSession(time.Hour))
	if !ok || err != nil {
		t.Fatalf("validator Fill = %v, %v", ok, err)
	}
	l, err = v.Lookup(ctx, other)
	mustOK(t, "validator Lookup", err)
	ok, err = v.FillIndexed(ctx, l, validSession(time.Hour), id)
	if !ok || err != nil {
		t.Fatalf("validator FillIndexed = %v, %v", ok, err)
	}
	if l, err = v.Lookup(ctx, tok); err != nil || l.Entry == nil || l.Watermark.IsZero() {
		t.Fatalf("validator hit = %+v, %v; want the entry and the watermark", l, err)
	}
	_, err = v.Probe(ctx)
	mustOK(t, "validator Probe", err)
	_, err = v.Info(ctx)
	mustOK(t, "validator Info", err)
	_, err = v.Time(ctx)
	mustOK(t, "validator Time", err)
	_, err = v.Watermark(ctx)
	mustOK(t, "validator Watermark", err)
	_, err = v.Generation(ctx)
	mustOK(t, "validator Generation", err)

	// The validator follows the notice channel.
	ps := subscribe()
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("validator SUBSCRIBE to the notice channel: %v", err)
	}

	// Everything the invalidator does.
	_, err = inv.Apply(ctx, []cache.Op{cache.Revoke(tok), cache.RevokeByID(id), cache.Drop(session.HashToken("x"))})
	mustOK(t, "invalidator Apply", err)
	mustOK(t, "invalidator Invalidate", inv.Invalidate(ctx, other))
	mark, err := inv.MarkFlushPending(ctx)
	mustOK(t, "invalidator MarkFlushPending", err)
	_, err = inv.FlushPending(ctx)
	mustOK(t, "invalidator FlushPending", err)
	mustOK(t, "invalidator ClearFlushPending", inv.ClearFlushPending(ctx, mark))
	_, err = inv.MarkFlushPendingIfNone(ctx)
	mustOK(t, "invalidator MarkFlushPendingIfNone", err)
	mustOK(t, "invalidator ScheduleRecheck", inv.ScheduleRecheck(ctx, 100, 1))
	_, err = inv.Recheck(ctx)
	mustOK(t, "invalidator Recheck", err)
	old, err := inv.Flush(ctx, "")
	mustOK(t, "invalidator Flush", err)
	_, err = inv.PurgeGeneration(ctx, old)
	mustOK(t, "invalidator PurgeGeneration", err)
	_, err = inv.Vouch(ctx, cache.Vouch{Watermark: cache.Watermark{At: time.Now(), Source: "db"}})
	mustOK(t, "invalidator Vouch", err)
	_, err = inv.Probe(ctx)
	mustOK(t, "invalidator Probe", err)

	return tok, id
}

// The same users on every node of a cluster: each process does all it
// does through the cluster client, and the validator can still write no
// shard's watermark, generation or marks.
func TestACLUsersCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := testenv.NewCluster(t, 3, 0)
	vURL, iURL := cl.LoadACL(t)
	client := func(url string) redis.UniversalClient {
		rdb, err := cache.NewClient(url, cache.ClientOptions{Timeout: time.Second})
		mustOK(t, "client", err)
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	vrdb, irdb := client(vURL), client(iURL)
	v, inv := cache.New(vrdb, cache.Options{}), cache.New(irdb, cache.Options{})
	aclAllowed(t, v, inv, func() *redis.PubSub { return v.Notices(ctx) })
	for k := range v.Shards() {
		p := cache.ShardPrefix(v, k)
		for _, cmd := range [][]any{
			{"SET", p + ":wm", "99999999999999|db|"},
			{"SET", p + ":gen", "gmine"},
			{"DEL", p + ":gen"},
			{"SET", p + ":flushpending", "x"},
			{"SET", p + ":recheck", "1|1"},
			{"SET", p + ":srv", "x"},
			{"INCR", p + ":invseq"},
		} {
			mustDeny(t, fmt.Sprint(cmd...), vrdb.Do(ctx, cmd...).Err())
		}
	}
	_, err := v.SetWatermark(ctx, cache.Watermark{At: time.Now().Add(time.Hour), Source: "db"})
	mustDeny(t, "SetWatermark", err)
	_, err = v.Flush(ctx, "")
	mustDeny(t, "Flush", err)
}
