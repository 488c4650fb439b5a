// Package validation answers "is this session token valid?": cache-aside over
// Redis with a Postgres fallback, a circuit breaker around Redis, the
// invalidator-watermark staleness guard and lease-guarded fills.
package validation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// Source says where an answer came from.
type Source string

// Sources of an answer.
const (
	SourceCache    Source = "cache"
	SourceDatabase Source = "database"
	// SourceToken: answered from the token alone, with no lookup: refused
	// on its own (a JWT with a bad signature, say), or a verified token that
	// names no session where that is allowed.
	SourceToken Source = "token"
)

// ErrUnavailable means the answer cannot be known: Postgres did not answer
// and the cache could not answer for it.
var ErrUnavailable = errors.New("validation unavailable")

// Result is the verdict on a token.
type Result struct {
	Valid   bool
	Session *session.Session // set when Valid, unless the token names no session
	// Credential is what the token claims (user, role, aal), set when Valid.
	Credential session.Credential
	// ExpiresAt is the earliest known end of the session with this token
	// (session.Rule.Deadline); zero: none known. Set when Valid.
	ExpiresAt time.Time
	Source    Source
}

// Store is what validation needs of Postgres.
type Store interface {
	Lookup(ctx context.Context, k session.Key) (pg.Found, error)
}

// Credentials turns a presented token into the session it names, refusing
// (session.ErrRefused) what fails on its own; source.Opaque and source.JWT
// are two.
type Credentials interface {
	Credential(token string) (session.Credential, error)
}

// BreakerOptions configure the circuit breaker around Redis.
type BreakerOptions struct {
	MinRequests  uint32        // requests in the window before it may trip (default 10)
	FailureRatio float64       // trips at this share of failures (default 0.7)
	Window       time.Duration // rolling window of the closed state (default 10s)
	OpenTimeout  time.Duration // open -> half-open after this (default 15s)
	HalfOpenMax  uint32        // trial requests in half-open (default 3)
}

// SourceIdentity is the validator's own database identity (pg.IdentitySQL);
// IdentityWatch is one.
type SourceIdentity interface {
	Current() string // "" while unknown
}

// Options configure a Service.
type Options struct {
	// Credentials reads presented tokens (default source.Opaque).
	Credentials Credentials
	// Rule is the validity rule beyond the row's own (timeouts).
	Rule session.Rule
	// Cache is nil when no Redis is configured (database-only mode).
	Cache *cache.Cache
	// CacheEnabled false sends every validation to Postgres (rollback switch).
	CacheEnabled bool
	// MaxStaleness: serve cache entries only while the invalidator watermark
	// vouches for Identity's database and is at most this old on Redis's
	// clock; 0 disables the guard (TTL-only mode).
	MaxStaleness time.Duration
	// Identity is the database this validator reads; with the guard on, a
	// nil or unknown identity trusts no cache hit.
	Identity SourceIdentity
	// NearCacheSize bounds the in-process near cache (entries); 0 turns it
	// off. It needs the cache and the staleness guard, and FollowNotices
	// running.
	NearCacheSize int
	// CacheTTL and NegativeTTL bound a near cache entry's life, as the
	// Redis entry's (defaults: cache.DefaultTTL, cache.DefaultNegativeTTL).
	CacheTTL, NegativeTTL time.Duration
	// RedisTimeout bounds one Redis call (default 1s).
	RedisTimeout time.Duration
	// DBTimeout bounds one Postgres call of a validation or an admin
	// operation (default 2s): a hung Postgres makes them unavailable rather
	// than hanging the request.
	DBTimeout time.Duration
	Breaker   BreakerOptions
	Logger    *zap.Logger
	Metrics   *Metrics // nil: no metrics
	// Now is the validator's clock: request timing and session expiry
	// (ValidAt). Staleness is measured on Redis's clock, never on this one.
	Now func() time.Time
}

// Service validates tokens.
type Service struct {
	store   Store
	o       Options
	log     *zap.Logger
	m       *Metrics
	breaker *gobreaker.CircuitBreaker[struct{}]
	now     func() time.Time

	hits, misses, errs, stale atomic.Uint64
	// wmAge is the watermark's age on Redis's clock at the last lookup
	// (negative: ahead of it); noWatermark when none was seen.
	wmAge atomic.Int64
	near  *near // nil: off
}

const noWatermark = math.MinInt64

// New builds a Service.
func New(store Store, o Options) *Service {
	if o.RedisTimeout <= 0 {
		o.RedisTimeout = time.Second
	}
	if o.DBTimeout <= 0 {
		o.DBTimeout = 2 * time.Second
	}
	b := &o.Breaker
	if b.MinRequests == 0 {
		b.MinRequests = 10
	}
	if b.FailureRatio <= 0 {
		b.FailureRatio = 0.7
	}
	if b.Window <= 0 {
		b.Window = 10 * time.Second
	}
	if b.OpenTimeout <= 0 {
		b.OpenTimeout = 15 * time.Second
	}
	if b.HalfOpenMax == 0 {
		b.HalfOpenMax = 3
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Credentials == nil {
		o.Credentials = source.Opaque{}
	}
	s := &Service{store: store, o: o, log: o.Logger, m: o.Metrics, now: o.Now}
	s.wmAge.Store(noWatermark)
	if o.NearCacheSize > 0 && s.cacheOn() && o.MaxStaleness > 0 {
		if o.CacheTTL <= 0 {
			o.CacheTTL = cache.DefaultTTL
		}
		if o.NegativeTTL <= 0 {
			o.NegativeTTL = cache.DefaultNegativeTTL
		}
		s.near = newNear(o.NearCacheSize, o.CacheTTL, o.NegativeTTL, o.Cache.Shards(), o.Cache.ShardOf, o.Metrics)
	}
	bucket := b.Window / 10
	s.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         "redis",
		MaxRequests:  b.HalfOpenMax,
		Interval:     b.Window,
		BucketPeriod: bucket,
		Timeout:      b.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			// Counts.Requests includes excluded requests; they are neither
			// successes nor failures and must not dilute the ratio.
			if c.Requests <= c.TotalExclusions {
				return false
			}
			n := c.Requests - c.TotalExclusions
			return n >= b.MinRequests && float64(c.TotalFailures) >= b.FailureRatio*float64(n)
		},
		// Redis calls run under a context of their own (see redis), so a
		// cancellation here can only come from inside the cache layer, not
		// from Redis failing: it does not count either way.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			lvl := zap.WarnLevel
			msg := "redis circuit breaker opened: validations go to Postgres until Redis recovers"
			switch to {
			case gobreaker.StateHalfOpen:
				lvl, msg = zap.InfoLevel, "redis circuit breaker half-open: trying Redis again"
			case gobreaker.StateClosed:
				lvl, msg = zap.InfoLevel, "redis circuit breaker closed: serving from the cache again"
			}
			s.log.Check(lvl, msg).Write(zap.String("from", from.String()), zap.String("to", to.String()))
			s.m.setBreaker(to)
		},
	})
	s.m.setBreaker(gobreaker.StateClosed)
	return s
}

// cacheOn reports whether validations should use Redis at all.
func (s *Service) cacheOn() bool { return s.o.Cache != nil && s.o.CacheEnabled }

// redis runs fn against Redis through the breaker with the per-call timeout.
// The call runs to Redis's own outcome even when the request's context is
// cancelled (go-redis would not return earlier anyway): a hung Redis behind
// impatient clients must still count as failures and trip the breaker,
// rather than be excused as "the caller went away".
func (s *Service) redis(ctx context.Context, op string, fn func(context.Context) error) error {
	_, err := s.breaker.Execute(func() (struct{}, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.RedisTimeout)
		defer cancel()
		return struct{}{}, fn(cctx)
	})
	if err != nil {
		s.errs.Add(1)
		s.m.cacheError(op, err)
		if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
			s.log.Warn("redis call failed; answering from Postgres",
				zap.String("op", op), zap.Error(err),
				zap.String("breaker", s.breaker.State().String()))
		}
	}
	return err
}

// Validate answers for one token. The token is read (hashed, or verified as
// a JWT) at once and never leaves this function in any other form. A token
// refused on its own is answered without a call to Redis or Postgres;
// session.ErrMalformedToken reports one that is empty or too long.
func (s *Service) Validate(ctx context.Context, token string) (Result, error) {
	start := s.now()
	cred, err := s.o.Credentials.Credential(token)
	switch {
	case errors.Is(err, session.ErrRefused):
		s.log.Debug("token refused before any lookup", zap.Error(err))
		r := Result{Valid: false, Source: SourceToken}
		s.observe(r, start)
		return r, nil
	case err != nil:
		return Result{}, err
	case cred.NoSession:
		r := Result{Valid: true, Credential: cred, ExpiresAt: cred.ExpiresAt, Source: SourceToken}
		s.observe(r, start)
		return r, nil
	}

	var l cache.Lookup
	haveLookup := false
	if s.cacheOn() {
		var t ticket
		if s.near != nil {
			if r, ok := s.fromNear(cred); ok {
				s.observe(r, start)
				return r, nil
			}
			t = s.near.begin(cred.Key.Hash)
		}
		sent := time.Now()
		err := s.redis(ctx, "lookup", func(ctx context.Context) error {
			var err error
			l, err = s.o.Cache.Lookup(ctx, cred.Key.Hash)
			return err
		})
		if err == nil {
			haveLookup = true
			if s.near != nil {
				s.near.looked(l, sent)
			}
			if r, ok := s.fromCache(l, cred); ok {
				if s.near != nil {
					s.near.put(t, l)
				}
				s.observe(r, start)
				return r, nil
			}
		}
	}
	r, fill, err := s.fromDatabase(ctx, cred)
	if err != nil {
		s.m.validation("unavailable", "database", s.now().Sub(start))
		return Result{}, err
	}
	if haveLookup && l.Lease != "" {
		if fill.cacheable && s.mayFill(l) {
			s.fill(ctx, l, fill)
		} else {
			s.m.fill("not_ours")
		}
	}
	s.observe(r, start)
	return r, nil
}

// fromCache answers from a lookup when it may: a hit that a trusted
// watermark covers.
func (s *Service) fromCache(l cache.Lookup, cred session.Credential) (Result, bool) {
	if !l.Watermark.At.IsZero() {
		s.wmAge.Store(int64(l.Now.Sub(l.Watermark.At)))
	}
	if l.Entry == nil {
		s.misses.Add(1)
		s.m.miss()
		return Result{}, false
	}
	if reason := s.Distrust(l.Watermark, l.Now); reason != "" {
		// The invalidator is behind, down, or vouches for another
		// database: a revocation may not have reached the cache, so
		// Postgres decides.
		s.stale.Add(1)
		s.m.staleBypass(reason)
		return Result{}, false
	}
	return s.hit(l.Entry, cred), true
}

// hit answers from a trusted cache entry.
func (s *Service) hit(e *cache.Entry, cred session.Credential) Result {
	s.hits.Add(1)
	s.m.hit()
	if e.Negative {
		return Result{Valid: false, Source: SourceCache}
	}
	sess := e.Session
	return s.judge(&sess, cred, s.now(), SourceCache)
}

// fromNear answers from the near cache when it holds the key's entry under
// a watermark the guard trusts.
func (s *Service) fromNear(cred session.Credential) (Result, bool) {
	e, wm, redisNow, ok := s.near.get(cred.Key.Hash)
	if !ok || s.Distrust(wm, redisNow) != "" {
		return Result{}, false
	}
	s.m.nearHit()
	return s.hit(e, cred), true
}

// Forget drops the near cache's copies of these key hashes at once, ahead
// of the notice that drops them everywhere (see AdminOptions.Forget).
func (s *Service) Forget(hashes ...session.Hash) {
	if s.near != nil {
		for _, h := range hashes {
			s.near.store.Invalidate(h)
		}
	}
}

// FollowNotices keeps the near cache in step with the cache's notice
// channel until ctx ends; it returns at once when the near cache is off.
func (s *Service) FollowNotices(ctx context.Context) {
	if s.near != nil {
		s.near.follow(ctx, s.o.Cache, s.log)
	}
}

// judge applies the rule to a session found at now.
func (s *Service) judge(sess *session.Session, cred session.Credential, now time.Time, src Source) Result {
	valid, deadline := Judge(s.o.Rule, sess, cred, now)
	if !valid {
		return Result{Valid: false, Source: src}
	}
	return Result{Valid: true, Session: sess, Credential: cred, ExpiresAt: deadline, Source: src}
}

// Reasons a cache hit is not trusted (the reason label of
// sessionguard_cache_stale_bypass_total).
const (
	DistrustNoWatermark     = "no_watermark"     // no watermark in Redis
	DistrustUnknownIdentity = "unknown_identity" // this validator cannot read its own database identity
	DistrustSourceMismatch  = "source_mismatch"  // the watermark vouches for another database or table
	DistrustFuture          = "future"           // the watermark is ahead of Redis's clock
	DistrustStale           = "stale"            // older than MaxStaleness on Redis's clock
)

// Distrust says why watermark wm, read when Redis's clock said redisNow,
// covers no cache hit (one of the Distrust reasons), "" when it does or the
// guard is off. Only Redis's clock is compared with the watermark, which is
// on that clock too.
func (s *Service) Distrust(wm cache.Watermark, redisNow time.Time) string {
	if s.o.MaxStaleness <= 0 {
		return ""
	}
	switch {
	case wm.At.IsZero():
		return DistrustNoWatermark
	case s.ownIdentity() == "":
		return DistrustUnknownIdentity
	case wm.Source != s.ownIdentity():
		return DistrustSourceMismatch
	case wm.At.After(redisNow):
		return DistrustFuture
	case redisNow.Sub(wm.At) > s.o.MaxStaleness:
		return DistrustStale
	}
	return ""
}

func (s *Service) ownIdentity() string {
	if s.o.Identity == nil {
		return ""
	}
	return s.o.Identity.Current()
}

// fromDatabase answers from Postgres, judging the row on Postgres's clock.
// sess is what to cache: the row while the rule holds for it, else nil (a
// negative entry); whether it backs this credential's claims is judged per
// request. cacheable is false for an answer read on a standby, which may lag
// the primary the invalidator follows.
func (s *Service) fromDatabase(ctx context.Context, cred session.Credential) (Result, toFill, error) {
	dctx, cancel := context.WithTimeout(ctx, s.o.DBTimeout)
	defer cancel()
	f, err := s.store.Lookup(dctx, cred.Key)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("postgres lookup failed; the validation cannot be answered",
				zap.Error(err))
		}
		return Result{}, toFill{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if f.Session == nil || !s.o.Rule.Valid(f.Session, f.Now) {
		return Result{Valid: false, Source: SourceDatabase}, toFill{cacheable: !f.Standby}, nil
	}
	return s.judge(f.Session, cred, f.Now, SourceDatabase), toFill{sess: f.Session, id: f.IDHash, cacheable: !f.Standby}, nil
}

// toFill is what a miss may cache: the row (nil: a negative entry), its id
// hash when its entry is indexed by it, and whether it may be cached at all.
type toFill struct {
	sess      *session.Session
	id        *session.Hash
	cacheable bool
}

// mayFill reports whether this validator may fill the namespace it looked
// up: with the guard on, only while the watermark vouches for its own
// database. Another deployment sharing the prefix must not fill entries that
// this one's invalidator has never checked (a watermark of another source
// that follows starts a new namespace, so a fill racing it is refused).
func (s *Service) mayFill(l cache.Lookup) bool {
	return s.o.MaxStaleness <= 0 || (l.Watermark.Source != "" && l.Watermark.Source == s.ownIdentity())
}

// fill stores Postgres's answer under the lookup's lease; a nil session
// stores a negative entry.
func (s *Service) fill(ctx context.Context, l cache.Lookup, f toFill) {
	var stored bool
	err := s.redis(ctx, "fill", func(ctx context.Context) error {
		var err error
		if f.id != nil {
			stored, err = s.o.Cache.FillIndexed(ctx, l, f.sess, *f.id)
		} else {
			stored, err = s.o.Cache.Fill(ctx, l, f.sess)
		}
		return err
	})
	switch {
	case err != nil:
		s.m.fill("error")
	case stored:
		s.m.fill("stored")
	default:
		// An invalidation or flush voided the lease while we read Postgres.
		s.m.fill("refused")
	}
}

func (s *Service) observe(r Result, start time.Time) {
	result := "invalid"
	if r.Valid {
		result = "valid"
	}
	s.m.validation(result, string(r.Source), s.now().Sub(start))
}

// Stats are the service's counters since start.
type Stats struct {
	Hits, Misses, Errors, StaleBypasses uint64
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), Errors: s.errs.Load(), StaleBypasses: s.stale.Load()}
}

// BreakerState is a state of the Redis circuit breaker.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerHalfOpen BreakerState = "half-open"
	BreakerOpen     BreakerState = "open"
)

func (b BreakerState) String() string { return string(b) }

// BreakerState is the Redis circuit breaker's state.
func (s *Service) BreakerState() BreakerState {
	switch s.breaker.State() {
	case gobreaker.StateClosed:
		return BreakerClosed
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerOpen
}

// CacheEnabled reports whether validations use Redis.
func (s *Service) CacheEnabled() bool { return s.cacheOn() }

// Cache returns the cache, nil in database-only mode.
func (s *Service) Cache() *cache.Cache { return s.o.Cache }

// MaxStaleness is the staleness guard (0: off).
func (s *Service) MaxStaleness() time.Duration { return s.o.MaxStaleness }

// OwnIdentity is the database identity this validator trusts watermarks
// of; "" while unknown.
func (s *Service) OwnIdentity() string { return s.ownIdentity() }

// WatermarkAge is how old the invalidator watermark was on Redis's clock at
// the last lookup (negative when it was ahead of that clock); ok is false
// when no lookup saw one yet.
func (s *Service) WatermarkAge() (time.Duration, bool) {
	age := s.wmAge.Load()
	if age == noWatermark {
		return 0, false
	}
	return time.Duration(age), true
}
