// Package cache is the one place that knows the Redis side of the project:
// key names, the value encoding, TTL rules, fill leases, the invalidator's
// watermark and the invalidation primitives. The validator's fill and the
// invalidator's drop go through the same code, so they always agree on keys.
//
// # Keys
//
//	<prefix>:gen            generation of the session namespace (absent: the invalidator's next heartbeat or apply starts one; see Options.StartsNamespace)
//	<prefix>:wm             invalidator watermark: <Unix ms on Redis's clock>|<source>|<catalog>
//	<prefix>:<gen>:s:<hash> cached entry for a key hash (hex SHA-256: see session.Key)
//	<prefix>:<gen>:l:<hash> fill lease for that hash
//	<prefix>:<gen>:i:<id>   the set of the hashes of a row's entries, by the hash
//	                        of its primary key, for tables whose DELETE names only
//	                        that (source.Table.ByID); each fill adds its own (a
//	                        row's key may change: every key it had is there)
//	<prefix>:<gen>:t:<id>   tombstone: no fill of that row's entry (see Op.ID)
//	<prefix>:flushpending   a flush is owed (see MarkFlushPending)
//	<prefix>:recheck        <xid>|<n>: n transactions below xid may still hide a change (see Vouch)
//	<prefix>:srv            run_id of the Redis server last seen
//	<prefix>:invseq, :inv   notice numbering and channel (see Notices)
//
// On a Redis Cluster each of these is kept per shard, under the shard's
// prefix {<prefix>/<k>/<salt>} instead of <prefix> (see shard).
//
// Flush moves to a new generation: every entry of the old namespace becomes
// unreachable at once (TRUNCATE, a lost replication slot) and expires by its
// TTL, while validators keep serving from the new, empty namespace.
// Generations are random tokens, never reused: when the generation key is
// deleted or evicted, the invalidator's next apply or watermark (or, with
// Options.StartsNamespace, a lookup) starts a new, empty
// namespace, so an old one can never come back.
//
// # Leases (no stale refill)
//
// A lookup that misses is handed a lease (SET NX with a short TTL) in the same
// round trip. The caller reads Postgres and may then fill the entry only while
// its lease is still there. Every invalidation deletes the lease along with the
// entry, and Flush changes the generation, so a fill that read Postgres before
// a revocation cannot land after that revocation's invalidation. Both checks
// run inside one Lua script, atomically.
//
// An op that may end a session (Revoke) also leaves a short tombstone in the
// lease's place (FillHold, 1s by default): no lease can be taken, so no fill
// lands, while Postgres may still be making the change visible.
package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Defaults.
const (
	DefaultPrefix      = "sg"
	DefaultTTL         = 5 * time.Minute
	DefaultNegativeTTL = 10 * time.Second
	DefaultLeaseTTL    = 5 * time.Second
	DefaultFillHold    = time.Second
	// applyChunk is how many operations one Lua call carries.
	applyChunk = 512
)

// Options configure a Cache.
type Options struct {
	Prefix      string        // key prefix; DefaultPrefix when empty
	TTL         time.Duration // longest life of a positive entry
	NegativeTTL time.Duration // life of an "invalid token" entry
	LeaseTTL    time.Duration // how long a miss may take to fill
	FillHold    time.Duration // how long a held op refuses fills (see Op.HoldFills)
	// StartsNamespace lets a lookup that finds no generation start one. A
	// validator that trusts the cache only under the invalidator's
	// watermark leaves that to the invalidator's next heartbeat (Vouch), so
	// its Redis user needs no write access to the generation (see
	// docs/operations.md, Redis ACL); until then it answers from Postgres.
	StartsNamespace bool
	Now             func() time.Time
}

// Cache wraps a Redis client with the project's cache rules.
type Cache struct {
	rdb     redis.UniversalClient
	o       Options
	cluster bool    // rdb is a Redis Cluster client
	shards  []shard // see shard
	// startsNamespace is Options.StartsNamespace as the lookup script's flag.
	startsNamespace string
}

// New returns a Cache; zero options take the defaults.
func New(rdb redis.UniversalClient, o Options) *Cache {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.FillHold <= 0 {
		o.FillHold = DefaultFillHold
	}
	o.FillHold = max(o.FillHold, time.Millisecond) // PX takes whole milliseconds, at least 1
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Cache{rdb: rdb, o: o, shards: []shard{newShard(o.Prefix)}, startsNamespace: "0"}
	if _, ok := rdb.(*redis.ClusterClient); ok {
		c.cluster, c.shards = true, clusterShards(o.Prefix)
	}
	if o.StartsNamespace {
		c.startsNamespace = "1"
	}
	return c
}

// PoolStats are the Redis connection pool's figures, for health.
type PoolStats struct {
	Total, Idle, Pending uint32
}

// PoolStats reads the Redis client's pool figures.
func (c *Cache) PoolStats() PoolStats {
	ps := c.rdb.PoolStats()
	if ps == nil {
		return PoolStats{}
	}
	return PoolStats{Total: ps.TotalConns, Idle: ps.IdleConns, Pending: ps.PendingRequests}
}

// TTL is the configured longest entry life.
func (c *Cache) TTL() time.Duration { return c.o.TTL }

// EntryKey is the Redis key of a key hash's entry in generation gen (as
// Generation returns it, or a Lookup's).
func (c *Cache) EntryKey(gen string, h session.Hash) string {
	k := c.shardOf(h)
	return c.shards[k].prefix + ":" + c.shardGeneration(gen, k) + ":s:" + h.Hex()
}

// LeaseKey is the Redis key of a key hash's fill lease in generation gen.
func (c *Cache) LeaseKey(gen string, h session.Hash) string {
	k := c.shardOf(h)
	return c.shards[k].prefix + ":" + c.shardGeneration(gen, k) + ":l:" + h.Hex()
}

// Entry is what the cache holds for a key hash: a session, or the verdict
// that the token is not valid (unknown, revoked or expired).
type Entry struct {
	Negative bool
	Session  session.Session
}

// Watermark is what the invalidator vouches for.
type Watermark struct {
	// At is on Redis's clock: every transaction committed before At has
	// been applied to the cache.
	At time.Time
	// Source names the database and table the watermark came from
	// (pg.IdentitySQL); a validator trusts only its own.
	Source string
	// Catalog fingerprints the publication and table definitions the
	// heartbeat checked. A change since the last watermark (even one undone
	// between two heartbeats) may have kept changes from the stream, so
	// SetWatermark starts a new namespace.
	Catalog string
}

// IsZero reports whether no watermark was stored.
func (w Watermark) IsZero() bool { return w.At.IsZero() && w.Source == "" }

// Lookup is the result of one lookup round trip.
type Lookup struct {
	Gen       string    // namespace generation the lookup saw (of its key hash's shard)
	Watermark Watermark // zero when none was written
	Now       time.Time // Redis's clock at the lookup
	Entry     *Entry    // nil on a miss
	Lease     string    // non-empty: this caller may Fill
	Hash      session.Hash
	// On a hit: the last notice number (see Notices) the entry's Redis had
	// published when it was read, and the entry's remaining life.
	Seq      uint64
	EntryTTL time.Duration
}

// The validator's scripts (lookup, fill) name no KEYS: Redis's ACL grants a
// key named in KEYS only to a user who may both read and write it, and a
// validator may only read the generation and the watermark. Each call inside
// is checked against the user's key patterns instead.

// lookupScript: ARGV prefix, hash, lease token, lease ms, and "1" to start
// a namespace when there is none, with a generation derived from the lease
// token: new, so never an old one. Without it, a lookup in no namespace is a
// miss without a lease.
var lookupScript = newKeylessScript(notifyLua + `
local t = redis.call('TIME')
local gk, wk = ARGV[1] .. ':gen', ARGV[1] .. ':wm'
local gen = redis.call('GET', gk)
if not gen then
  if ARGV[5] ~= '1' then return {'', redis.call('GET', wk) or '', '', '', t[1], t[2], '', ''} end
  gen = 'g' .. ARGV[3]
  if redis.call('SET', gk, gen, 'NX') then notify(ARGV[1], 'f', '') else gen = redis.call('GET', gk) end
end
local wm = redis.call('GET', wk) or ''
local base = ARGV[1] .. ':' .. gen .. ':'
local ek = base .. 's:' .. ARGV[2]
local v = redis.call('GET', ek)
if v then
  return {gen, wm, v, '', t[1], t[2], redis.call('GET', ARGV[1] .. ':invseq') or '0', tostring(redis.call('PTTL', ek))}
end
if redis.call('SET', base .. 'l:' .. ARGV[2], ARGV[3], 'PX', ARGV[4], 'NX') then
  return {gen, wm, '', ARGV[3], t[1], t[2], '', ''}
end
return {gen, wm, '', '', t[1], t[2], '', ''}
`)

// Lookup reads the entry for h, the watermark and Redis's clock in one round
// trip. On a miss it also asks for a fill lease; Lease is empty when another
// caller holds one.
func (c *Cache) Lookup(ctx context.Context, h session.Hash) (Lookup, error) {
	lease := strconv.FormatUint(rand.Uint64(), 36)
	res, err := c.runOnShard(ctx, lookupScript,
		c.shards[c.shardOf(h)].prefix, h.Hex(), lease, c.o.LeaseTTL.Milliseconds(), c.startsNamespace).StringSlice()
	if err != nil {
		return Lookup{}, fmt.Errorf("cache lookup: %w", err)
	}
	if len(res) != 8 {
		return Lookup{}, fmt.Errorf("cache lookup: script returned %d values", len(res))
	}
	l := Lookup{Gen: res[0], Lease: res[3], Hash: h}
	if l.Now, err = parseTime(res[4], res[5]); err != nil {
		return Lookup{}, fmt.Errorf("cache lookup: %w", err)
	}
	if res[1] != "" {
		if l.Watermark, err = ParseWatermark(res[1]); err != nil {
			return Lookup{}, fmt.Errorf("cache lookup: %w", err)
		}
	}
	if res[2] != "" {
		e, err := decodeEntry(res[2])
		if err != nil {
			return Lookup{}, fmt.Errorf("cache lookup: %w", err)
		}
		l.Entry = e
		if l.Seq, err = strconv.ParseUint(res[6], 10, 64); err != nil {
			return Lookup{}, fmt.Errorf("cache lookup: notice number %q", res[6])
		}
		ms, err := strconv.ParseInt(res[7], 10, 64)
		if err != nil {
			return Lookup{}, fmt.Errorf("cache lookup: entry ttl %q", res[7])
		}
		l.EntryTTL = time.Duration(ms) * time.Millisecond // -1: none (never written so)
	}
	return l, nil
}

// fillScript: ARGV prefix, gen, hash, lease, value, ttl ms, and the row's
// id hash ("" for none, or a negative entry): a row under a tombstone is
// not filled, and the index from the id to the entry is written with it.
var fillScript = newKeylessScript(`
if redis.call('GET', ARGV[1] .. ':gen') ~= ARGV[2] then return 0 end
local base = ARGV[1] .. ':' .. ARGV[2] .. ':'
local lk = base .. 'l:' .. ARGV[3]
if redis.call('GET', lk) ~= ARGV[4] then return 0 end
if ARGV[7] ~= '' and redis.call('EXISTS', base .. 't:' .. ARGV[7]) == 1 then return 0 end
redis.call('DEL', lk)
redis.call('SET', base .. 's:' .. ARGV[3], ARGV[5], 'PX', ARGV[6])
if ARGV[7] ~= '' then
  local ik = base .. 'i:' .. ARGV[7]
  redis.call('SADD', ik, ARGV[3])
  if redis.call('PTTL', ik) < tonumber(ARGV[6]) then redis.call('PEXPIRE', ik, ARGV[6]) end
end
return 1
`)

// Fill stores what Postgres said for l's key hash: the session when it is
// valid, a negative entry when sess is nil or not valid. It stores nothing and
// returns false when the lease was voided meanwhile (an invalidation or a
// flush came between the lookup and the fill), or when l holds no lease.
func (c *Cache) Fill(ctx context.Context, l Lookup, sess *session.Session) (bool, error) {
	return c.fill(ctx, l, sess, "")
}

// FillIndexed is Fill for a row of a table whose DELETE names only its
// primary key (source.Table.ByID): id is the hash of that key. The entry is
// indexed by it, and not stored while an Op with ID holds the row.
func (c *Cache) FillIndexed(ctx context.Context, l Lookup, sess *session.Session, id session.Hash) (bool, error) {
	return c.fill(ctx, l, sess, id.Hex())
}

func (c *Cache) fill(ctx context.Context, l Lookup, sess *session.Session, id string) (bool, error) {
	if l.Lease == "" {
		return false, nil
	}
	value, ttl := c.encodeFor(sess)
	if value == negativeValue {
		id = ""
	}
	n, err := c.runOnShard(ctx, fillScript,
		c.shards[c.shardOf(l.Hash)].prefix, l.Gen, l.Hash.Hex(), l.Lease, value, ttl.Milliseconds(), id).Int()
	if err != nil {
		return false, fmt.Errorf("cache fill: %w", err)
	}
	return n == 1, nil
}

// EntryTTL is the life of an entry for sess: min(TTL, time left until
// expires_at, when it has one), so no entry outlives its session. Zero or
// less means the session must not be cached as valid.
func (c *Cache) EntryTTL(sess *session.Session) time.Duration {
	if sess.ExpiresAt.IsZero() {
		return c.o.TTL
	}
	left := sess.ExpiresAt.Sub(c.o.Now())
	if left < c.o.TTL {
		return left
	}
	return c.o.TTL
}

// encodeFor chooses value and TTL for a fill.
func (c *Cache) encodeFor(sess *session.Session) (string, time.Duration) {
	if sess != nil && sess.ValidAt(c.o.Now()) {
		if ttl := c.EntryTTL(sess); ttl >= time.Millisecond {
			return encodeEntry(sess), ttl
		}
	}
	return negativeValue, c.o.NegativeTTL
}

// Op is one invalidator effect on a key hash's entry.
type Op struct {
	Hash session.Hash
	// Session nil: drop the entry. Otherwise replace a cached positive entry
	// with it (never create one); a negative entry is dropped instead.
	Session *session.Session
	// HoldFills refuses fills of this hash for Options.FillHold after the op
	// (a tombstone in place of the lease). A logical decoding consumer can
	// see a commit a moment before the committing transaction is visible to
	// new snapshots; a validator that missed in that moment would read the
	// old row and refill the entry the op just dropped. The hold refuses
	// such fills; the invalidator confirms visibility before it moves on,
	// and then applies the op again without it (see Settled), which undoes
	// a fill that got past a lost hold.
	// Every change to an existing session holds until its transaction is
	// known to be visible (see Settled); an INSERT's drop does not, so a new
	// session is cacheable at once.
	HoldFills bool
	// ID, when set, makes this an op on a row named only by the hash of its
	// primary key (source.Table.ByID): every entry the id index holds is
	// dropped with its fills held, but Hash's (the row's current key,
	// updated by an op of its own; zero Hash: none), and the row's
	// fills are refused for LeaseTTL+FillHold: long enough that any fill
	// that read the row before this op was applied has lost its lease first.
	// Session and HoldFills are not read.
	ID *session.Hash
}

// RevokeByID returns an Op that drops the entry of the row whose primary
// key hashes to id, and refuses that row's fills for a while: the effect of
// a DELETE that names only the id.
func RevokeByID(id session.Hash) Op { return Op{ID: &id} }

// Rekeyed returns an Op for an UPDATE of a row whose primary key hashes to
// id and whose key now hashes to h: an entry of another key of the row is
// dropped, and the row's fills are refused for a while (the key may have
// changed under a fill of the old one).
func Rekeyed(id, h session.Hash) Op { return Op{ID: &id, Hash: h} }

// Drop returns an Op that deletes h's entry (and voids its lease) without
// holding fills: the effect of an INSERT.
func Drop(h session.Hash) Op { return Op{Hash: h} }

// Settled returns ops as they may be applied once their transaction is
// known to be visible to new snapshots: without holds. Every fill then
// either lost its lease to the op or read the database after the change;
// a hold would only cost Redis a key per op. An op by id keeps its
// tombstone: the leases of its row's other keys are not known.
func Settled(ops []Op) []Op {
	out := make([]Op, len(ops))
	for i, op := range ops {
		op.HoldFills = false
		out[i] = op
	}
	return out
}

// Revoke returns an Op that deletes h's entry and holds fills: the effect of
// a change that may end a session (revoke, expire, delete, token change).
func Revoke(h session.Hash) Op { return Op{Hash: h, HoldFills: true} }

// applyScript runs a batch of ops. ARGV: prefix, hold ms, a new generation
// for when there is none (its holds must land somewhere), then (op, hash,
// value, ttl) per op; op is 'd' (drop) or 'u' (update in place), upper-case
// when fills are held, and every such op voids the hash's lease; or op is
// 'i' (by id: see Op.ID), with the id hash, the hash to keep ("" none) and
// the tombstone's ms.
var applyScript = redis.NewScript(notifyLua + `
local gen = redis.call('GET', KEYS[1])
if not gen then
  gen = ARGV[3]
  redis.call('SET', KEYS[1], gen)
  notify(ARGV[1], 'f', '')
end
local base = ARGV[1] .. ':' .. gen .. ':'
local changed = 0
local touched = {}
for i = 4, #ARGV, 4 do
  local op, h = ARGV[i], ARGV[i+1]
  if op == 'i' then
    local ik = base .. 'i:' .. h
    for _, cur in ipairs(redis.call('SMEMBERS', ik)) do
      if cur ~= ARGV[i+2] then
        redis.call('SET', base .. 'l:' .. cur, 'hold', 'PX', ARGV[2])
        changed = changed + redis.call('DEL', base .. 's:' .. cur)
        redis.call('SREM', ik, cur)
        if string.match(cur, '^%x+$') and #cur == 64 then touched[#touched+1] = cur end
      end
    end
    redis.call('SET', base .. 't:' .. h, 'hold', 'PX', ARGV[i+3])
  else
  touched[#touched+1] = h
  local lk = base .. 'l:' .. h
  if op == 'D' or op == 'U' then
    redis.call('SET', lk, 'hold', 'PX', ARGV[2])
  else
    redis.call('DEL', lk)
  end
  local ek = base .. 's:' .. h
  if op == 'd' or op == 'D' then
    changed = changed + redis.call('DEL', ek)
  else
    local cur = redis.call('GET', ek)
    if cur then
      local pttl = redis.call('PTTL', ek)
      local ttl = tonumber(ARGV[i+3])
      if cur == '0' or pttl <= 0 then
        redis.call('DEL', ek)
      else
        if ttl < pttl then pttl = ttl end
        redis.call('SET', ek, ARGV[i+2], 'PX', pttl)
      end
      changed = changed + 1
    end
  end
  end
end
if #touched > 0 then notify(ARGV[1], 'd', table.concat(touched, ',')) end
return changed
`)

// Apply runs ops (drops and in-place updates) in chunks, pipelined: each op
// on its hash's shard, an op by row id on every shard. It returns how many
// cached entries it changed. Safe to repeat.
func (c *Cache) Apply(ctx context.Context, ops []Op) (int, error) {
	if len(ops) == 0 {
		return 0, nil
	}
	byShard := make([][]Op, len(c.shards))
	for _, op := range ops {
		if op.ID != nil {
			for k := range byShard {
				byShard[k] = append(byShard[k], op)
			}
			continue
		}
		k := c.shardOf(op.Hash)
		byShard[k] = append(byShard[k], op)
	}
	var calls []scriptCall
	for k, ops := range byShard {
		sh := c.shards[k]
		for start := 0; start < len(ops); start += applyChunk {
			end := min(start+applyChunk, len(ops))
			args := make([]any, 0, 3+4*(end-start))
			args = append(args, sh.prefix, c.o.FillHold.Milliseconds(), newGeneration())
			for _, op := range ops[start:end] {
				args = append(args, c.opArgs(op)...)
			}
			calls = append(calls, scriptCall{keys: []string{sh.genKey}, args: args})
		}
	}
	cmds, err := c.runScripts(ctx, applyScript, calls)
	if err != nil {
		return 0, fmt.Errorf("cache apply %d ops: %w", len(ops), err)
	}
	changed := 0
	for _, cmd := range cmds {
		n, _ := cmd.Int()
		changed += n
	}
	return changed, nil
}

func (c *Cache) opArgs(op Op) []any {
	if op.ID != nil {
		keep := ""
		if op.Hash != (session.Hash{}) {
			keep = op.Hash.Hex()
		}
		return []any{"i", op.ID.Hex(), keep, (c.o.LeaseTTL + c.o.FillHold).Milliseconds()}
	}
	drop, update := "d", "u"
	if op.HoldFills {
		drop, update = "D", "U"
	}
	if op.Session == nil || !op.Session.ValidAt(c.o.Now()) {
		return []any{drop, op.Hash.Hex(), "", 0}
	}
	ttl := c.EntryTTL(op.Session)
	if ttl < time.Millisecond {
		return []any{drop, op.Hash.Hex(), "", 0}
	}
	return []any{update, op.Hash.Hex(), encodeEntry(op.Session), ttl.Milliseconds()}
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Invalidate drops the entries of these key hashes, voids their leases
// and holds fills (Revoke) for Options.FillHold.
func (c *Cache) Invalidate(ctx context.Context, hashes ...session.Hash) error {
	ops := make([]Op, len(hashes))
	for i, h := range hashes {
		ops[i] = Revoke(h)
	}
	_, err := c.Apply(ctx, ops)
	return err
}

// Prefix is the key prefix of this deployment.
func (c *Cache) Prefix() string { return c.o.Prefix }

// FormatWatermark encodes a watermark: <Unix ms>|<source>|<catalog>.
func FormatWatermark(w Watermark) string {
	return strconv.FormatInt(w.At.UnixMilli(), 10) + "|" + w.Source + "|" + w.Catalog
}

// ParseWatermark decodes FormatWatermark's output. A value without a source
// (written by an older version) has Source "".
func ParseWatermark(s string) (Watermark, error) {
	ms, rest, _ := strings.Cut(s, "|")
	src, cat, _ := strings.Cut(rest, "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 || n > maxWatermarkMillis {
		return Watermark{}, fmt.Errorf("bad watermark %q", s)
	}
	return Watermark{At: time.UnixMilli(n), Source: src, Catalog: cat}, nil
}

// maxWatermarkMillis is the year 9999: anything later is not a time.
const maxWatermarkMillis = 253402300799999

// parseTime reads the two strings of Redis TIME.
func parseTime(sec, usec string) (time.Time, error) {
	s, err1 := strconv.ParseInt(sec, 10, 64)
	u, err2 := strconv.ParseInt(usec, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, fmt.Errorf("bad redis TIME %q %q", sec, usec)
	}
	return time.Unix(s, u*1000), nil
}
