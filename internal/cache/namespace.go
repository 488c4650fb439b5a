package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The invalidator's control of namespaces: flushes, the pending-flush and
// recheck marks, the watermark. Each runs on every shard (see shard); on a
// single Redis that is one.

// eachShard runs script once per shard (see runScripts), with the keys
// and arguments call gives for shard k.
func (c *Cache) eachShard(ctx context.Context, script *redis.Script, call func(k int, sh shard) ([]string, []any)) ([]*redis.Cmd, error) {
	calls := make([]scriptCall, len(c.shards))
	for k, sh := range c.shards {
		calls[k].keys, calls[k].args = call(k, sh)
	}
	return c.runScripts(ctx, script, calls)
}

// scriptCall is one run of a script.
type scriptCall struct {
	keys []string
	args []any
}

// runScripts runs script once per call, pipelined (on a cluster the
// pipeline sends each to the node of its keys), by EVALSHA; a node that
// does not have the script yet gets it by EVAL, for just the calls it
// refused, so every call runs once. The error is the first call's that
// failed.
func (c *Cache) runScripts(ctx context.Context, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	pipe := c.rdb.Pipeline()
	for i, call := range calls {
		cmds[i] = script.EvalSha(ctx, pipe, call.keys, call.args...)
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	var again []int
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe = c.rdb.Pipeline()
		for _, i := range again {
			cmds[i] = script.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return cmds, err
		}
	}
	return cmds, nil
}

var flushScript = redis.NewScript(notifyLua + `
local old = redis.call('GET', KEYS[1]) or ''
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
notify(ARGV[3], 'f', '')
return old
`)

// newGeneration returns a generation token that is never reused.
func newGeneration() string {
	return strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
}

// Flush empties the session namespace by moving every shard to a new
// generation, and returns the old one ("" when there was none; its keys
// expire by TTL, PurgeGeneration removes them sooner). When owed is the
// token of the pending-flush mark it also clears the mark; a mark set again
// since (with another token) stays.
func (c *Cache) Flush(ctx context.Context, owed string) (old string, err error) {
	cmds, err := c.eachShard(ctx, flushScript, func(_ int, sh shard) ([]string, []any) {
		return []string{sh.genKey, sh.pendingKey}, []any{newGeneration(), owed, sh.prefix}
	})
	if err != nil {
		return "", fmt.Errorf("cache flush: %w", err)
	}
	gens := make([]string, len(cmds))
	for k, cmd := range cmds {
		gens[k], _ = cmd.Text()
	}
	return c.generationsOrNone(gens), nil
}

// generationsOrNone joins the shards' generations (see joinGenerations):
// "" when no shard has one.
func (c *Cache) generationsOrNone(gens []string) string {
	for _, g := range gens {
		if g != "" {
			return c.joinGenerations(gens)
		}
	}
	return ""
}

// MarkFlushPending records that a flush is owed and returns the mark's new
// token: before the invalidator does something after which the cache must be
// flushed (creating a replication slot), or while changes may be going
// unseen (the sessions table not fully published). If the process dies
// before the flush, the next one sees FlushPending and flushes first.
func (c *Cache) MarkFlushPending(ctx context.Context) (string, error) {
	token := newGeneration()
	pipe := c.rdb.Pipeline()
	for _, sh := range c.shards {
		pipe.Set(ctx, sh.pendingKey, token, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return "", fmt.Errorf("mark cache flush pending: %w", err)
	}
	return token, nil
}

// FlushPending returns the token of a flush that was marked and not yet
// done (of any shard: a flush owed is owed by all); "" when none is owed.
func (c *Cache) FlushPending(ctx context.Context) (string, error) {
	vals, err := c.readEach(ctx, func(sh shard) string { return sh.pendingKey })
	if err != nil {
		return "", fmt.Errorf("read pending cache flush: %w", err)
	}
	for _, v := range vals {
		if v != "" {
			return v, nil
		}
	}
	return "", nil
}

// readEach GETs one key of every shard, pipelined; "" where it is absent.
func (c *Cache) readEach(ctx context.Context, key func(shard) string) ([]string, error) {
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(c.shards))
	for k, sh := range c.shards {
		cmds[k] = pipe.Get(ctx, key(sh))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	vals := make([]string, len(cmds))
	for k, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		vals[k] = v
	}
	return vals, nil
}

// Generation returns the current namespace generation, "" when there is
// none; on a cluster, every shard's (see EntryKey), "" when no shard has
// one.
func (c *Cache) Generation(ctx context.Context) (string, error) {
	gens, err := c.readEach(ctx, func(sh shard) string { return sh.genKey })
	if err != nil {
		return "", fmt.Errorf("read cache generation: %w", err)
	}
	return c.generationsOrNone(gens), nil
}

// PurgeGeneration deletes the keys of an old generation (as Flush or
// Vouch returned it) in batches. It must not be called for the current
// generation; "" purges nothing.
func (c *Cache) PurgeGeneration(ctx context.Context, gen string) (int, error) {
	deleted := 0
	for k, sh := range c.shards {
		g := c.shardGeneration(gen, k)
		if g == "" {
			continue
		}
		rdb, err := c.nodeOf(ctx, k)
		if err != nil {
			return deleted, fmt.Errorf("purge generation %s: %w", g, err)
		}
		n, err := purge(ctx, rdb, sh.prefix+":"+g+":*")
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("purge generation %s: %w", g, err)
		}
	}
	return deleted, nil
}

// purge UNLINKs the keys matching pattern on one node, in batches.
func purge(ctx context.Context, rdb redis.Cmdable, pattern string) (int, error) {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	deleted := 0
	batch := make([]string, 0, 1000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := rdb.Unlink(ctx, batch...).Result()
		deleted += int(n)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return deleted, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return deleted, err
	}
	return deleted, flush()
}

var setWatermarkScript = redis.NewScript(notifyLua + `
local gen = redis.call('GET', KEYS[1])
local rcv = redis.call('GET', KEYS[4])
local rc, open
if rcv then rc, open = string.match(rcv, '^(%d+)|(%d+)$') end
local reason = ''
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if run ~= redis.call('GET', KEYS[5]) then
  reason = 'redis_restart'
  redis.call('SET', KEYS[5], run)
elseif not gen then
  reason = 'generation_lost'
else
  local cur = redis.call('GET', KEYS[2])
  local src, cat
  if cur then src, cat = string.match(cur, '^[^|]*|([^|]*)|?(.*)$') end
  if cur and src ~= ARGV[3] then
    reason = 'source_changed'
  elseif cur and cat ~= ARGV[4] then
    reason = 'catalog_changed'
  elseif ARGV[5] ~= '' then
    reason = 'flush_pending'
  elseif rc and ARGV[8] == rc and tonumber(ARGV[9]) < tonumber(open) then
    reason = 'recheck'
  elseif ARGV[11] == '1' and rc and ARGV[8] ~= rc and ARGV[6] ~= '0' then
    reason = 'recheck_other'
  end
end
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
if reason == 'recheck' then
  if tonumber(ARGV[9]) == 0 then redis.call('DEL', KEYS[4]) else redis.call('SET', KEYS[4], rc .. '|' .. ARGV[9]) end
elseif reason ~= '' and ARGV[6] ~= '0' then
  if ARGV[7] == '0' then redis.call('DEL', KEYS[4]) else redis.call('SET', KEYS[4], ARGV[6] .. '|' .. ARGV[7]) end
end
local old = ''
if reason ~= '' then
  old = gen or ''
  redis.call('SET', KEYS[1], ARGV[1])
  notify(ARGV[10], 'f', '')
end
redis.call('SET', KEYS[2], ARGV[2])
notify(ARGV[10], 'w', ARGV[2])
return {reason, old}
`)

// Reset says whether SetWatermark started a new namespace first, and why.
type Reset struct {
	// Reason is "" when the namespace stays; otherwise redis_restart,
	// generation_lost, source_changed, catalog_changed, flush_pending,
	// recheck or recheck_other.
	Reason string
	Old    string // the generation left behind, for PurgeGeneration
}

// Vouch is a watermark with what the heartbeat behind it saw. The snapshot
// figures are of the check's snapshot (pg_current_snapshot, 64-bit xids);
// zero when unknown.
type Vouch struct {
	Watermark
	// Owed is the pending-flush mark the heartbeat saw: the namespace is
	// flushed first, and the mark cleared if it still holds that token.
	Owed string
	// Xmax and InProgress: the snapshot's xmax and how many transactions
	// were in progress in it.
	Xmax, InProgress uint64
	// Recheck is the recheck xid the heartbeat read before its check (0
	// none), and Open how many transactions below it were still in progress.
	Recheck, Open uint64
}

// SetWatermark records w; see Vouch.
func (c *Cache) SetWatermark(ctx context.Context, w Watermark) (Reset, error) {
	return c.Vouch(ctx, Vouch{Watermark: w})
}

// Vouch records v's watermark. Only the invalidator calls it. In the same
// script it first starts a new, empty namespace when:
//   - the server is not the one last seen (see FlushIfServerChanged):
//     redis_restart. Checked here, atomically, because a Sentinel failover
//     between a separate check and the watermark would let the watermark
//     vouch for a promoted replica that never received the last drops;
//   - the generation key is gone (deleted or evicted): generation_lost;
//   - the stored watermark vouched for another source (the sessions table
//     was re-created, or the invalidator now follows another database):
//     source_changed;
//   - the catalog fingerprint changed (the publication or table was altered
//     since, perhaps and back): catalog_changed;
//   - a flush is owed (v.Owed): flush_pending;
//   - a transaction that was in progress at an earlier such flush has ended
//     since the last watermark: recheck;
//   - on a cluster, the shard holds another recheck than the one the
//     heartbeat counted (it reset on its own): recheck_other, which records
//     this heartbeat's, so no shard's recheck goes uncounted. On a single
//     Redis such a heartbeat read the recheck before it changed, and the
//     next one counts the new one.
//
// Postgres decides whether to publish a change by the catalog when the row
// was written: a transaction that wrote while the table was unpublished and
// commits after the repair is never streamed, and a validator may have
// refilled its old row after the first flush. So every flush but a recheck
// records the snapshot's xmax and in-progress count (<prefix>:recheck), and
// each later heartbeat counts which of those transactions are still in
// progress: whenever one has ended, the namespace is flushed again, until
// none is left. A revocation caught this way is refused within a heartbeat
// of its commit, whatever other transactions stay open.
//
// On a cluster each shard decides for itself, in its own script: Reason is
// the first shard's that reset (one that is not a recheck before a recheck)
// and Old the generations the shards that reset left behind.
func (c *Cache) Vouch(ctx context.Context, v Vouch) (Reset, error) {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	sharded := "0"
	if len(c.shards) > 1 {
		sharded = "1"
	}
	cmds, err := c.eachShard(ctx, setWatermarkScript, func(_ int, sh shard) ([]string, []any) {
		return []string{sh.genKey, sh.wmKey, sh.pendingKey, sh.recheckKey, sh.srvKey},
			[]any{newGeneration(), FormatWatermark(v.Watermark), v.Source, v.Catalog, v.Owed,
				u(v.Xmax), u(v.InProgress), u(v.Recheck), u(v.Open), sh.prefix, sharded}
	})
	if err != nil {
		return Reset{}, fmt.Errorf("set watermark: %w", err)
	}
	var r Reset
	olds := make([]string, len(cmds))
	for k, cmd := range cmds {
		res, err := cmd.StringSlice()
		if err != nil || len(res) != 2 {
			return Reset{}, fmt.Errorf("set watermark: script returned %v (%v)", res, err)
		}
		if res[0] != "" && (r.Reason == "" || r.Reason == "recheck") {
			r.Reason = res[0]
		}
		olds[k] = res[1]
	}
	r.Old = c.generationsOrNone(olds)
	return r, nil
}

// Recheck returns the xid a recheck counts transactions below (see Vouch);
// 0 when none is pending. Shards that reset on their own (a cluster node
// restarted) may hold different ones: only one can be counted at a time,
// so then a flush of every shard is marked owed, after which they all hold
// the same (meanwhile the others reset at every watermark: recheck_other).
// Read it before FlushPending, so the mark goes with the same heartbeat.
func (c *Cache) Recheck(ctx context.Context) (uint64, error) {
	vals, err := c.readEach(ctx, func(sh shard) string { return sh.recheckKey })
	if err != nil {
		return 0, fmt.Errorf("read cache recheck: %w", err)
	}
	var xid uint64
	for _, v := range vals {
		if v == "" {
			continue
		}
		rc, _, _ := strings.Cut(v, "|")
		n, err := strconv.ParseUint(rc, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad cache recheck %q", v)
		}
		if xid != 0 && n != xid {
			if _, err := c.MarkFlushPendingIfNone(ctx); err != nil {
				return 0, err
			}
			continue
		}
		xid = n
	}
	return xid, nil
}

// ScheduleRecheck records, after a flush made outside Vouch, the snapshot
// xmax and in-progress count to recheck against (see Vouch). Call it before
// that flush: a recheck without its flush costs a flush, a flush without its
// recheck may miss a transaction.
func (c *Cache) ScheduleRecheck(ctx context.Context, xmax, inProgress uint64) error {
	pipe := c.rdb.Pipeline()
	for _, sh := range c.shards {
		if inProgress == 0 {
			pipe.Del(ctx, sh.recheckKey)
		} else {
			pipe.Set(ctx, sh.recheckKey, strconv.FormatUint(xmax, 10)+"|"+strconv.FormatUint(inProgress, 10), 0)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("schedule cache recheck: %w", err)
	}
	return nil
}

// MarkFlushPendingIfNone sets a pending-flush mark on every shard that has
// none, and returns its token; "" when every shard had one already (they
// stay).
func (c *Cache) MarkFlushPendingIfNone(ctx context.Context) (string, error) {
	token := newGeneration()
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(c.shards))
	for k, sh := range c.shards {
		cmds[k] = pipe.SetNX(ctx, sh.pendingKey, token, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return "", fmt.Errorf("mark cache flush pending: %w", err)
	}
	for _, cmd := range cmds {
		if cmd.Val() {
			return token, nil
		}
	}
	return "", nil
}

var clearPendingScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// ClearFlushPending removes the pending-flush mark of every shard that still
// holds token: what it was set for was done without a flush.
func (c *Cache) ClearFlushPending(ctx context.Context, token string) error {
	if _, err := c.eachShard(ctx, clearPendingScript, func(_ int, sh shard) ([]string, []any) {
		return []string{sh.pendingKey}, []any{token}
	}); err != nil {
		return fmt.Errorf("clear pending cache flush: %w", err)
	}
	return nil
}

// Watermark reads the watermark; zero when none was written. On a cluster
// it is the oldest shard's, zero when a shard has none.
func (c *Cache) Watermark(ctx context.Context) (Watermark, error) {
	vals, err := c.readEach(ctx, func(sh shard) string { return sh.wmKey })
	if err != nil {
		return Watermark{}, fmt.Errorf("read watermark: %w", err)
	}
	var oldest Watermark
	for k, v := range vals {
		if v == "" {
			return Watermark{}, nil
		}
		w, err := ParseWatermark(v)
		if err != nil {
			return Watermark{}, err
		}
		if k == 0 || w.At.Before(oldest.At) {
			oldest = w
		}
	}
	return oldest, nil
}

// Time is Redis's clock, the one clock every process measures staleness on.
// On a cluster each shard's node has its own: Time is the earliest of its
// masters', so a watermark taken from it is no later than any node's clock
// (a skewed clock makes the cache look staler, never fresher).
func (c *Cache) Time(ctx context.Context) (time.Time, error) {
	if !c.cluster {
		t, err := c.rdb.Time(ctx).Result()
		if err != nil {
			return time.Time{}, fmt.Errorf("redis time: %w", err)
		}
		return t, nil
	}
	masters, err := c.masters(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("redis time: %w", err)
	}
	var earliest time.Time
	for _, node := range masters {
		t, err := node.Time(ctx).Result()
		if err != nil {
			return time.Time{}, fmt.Errorf("redis time: %w", err)
		}
		if earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	return earliest, nil
}
