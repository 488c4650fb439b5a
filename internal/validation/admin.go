package validation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/session"
)

// ErrCacheInvalidation means a revocation was committed in Postgres but its
// cache entry could not be dropped. Retrying the revocation is safe and drops
// it again; the invalidator drops it too once Redis is back.
var ErrCacheInvalidation = errors.New("revoked in postgres, but the cache entry could not be dropped")

// Errors of the admin operations a caller answers differently.
var (
	// ErrNotFound: no session has this id.
	ErrNotFound = errors.New("session not found")
	// ErrInvalidInput: Postgres refused a value of the request (a bad uuid,
	// say): a client error rather than an outage.
	ErrInvalidInput = errors.New("postgres refused a value of the request")
)

// AdminOptions bound the admin operations' calls.
type AdminOptions struct {
	DBTimeout    time.Duration // one Postgres call (default 2s)
	RedisTimeout time.Duration // one Redis call (default 1s)
	// Forget drops this process's own near-cache copies of the key hashes
	// an operation changed (Service.Forget), so its next validation does
	// not wait for the notice; nil: none.
	Forget func(hashes ...session.Hash)
}

// AdminStore is what the admin operations need of Postgres.
type AdminStore interface {
	Create(ctx context.Context, userID string, h session.Hash, ttl time.Duration) (*session.Session, error)
	RevokeByID(ctx context.Context, id string) (session.Hash, error)
	RevokeByUser(ctx context.Context, userID string) (int, []session.Hash, error)
	// CreatesSessions is false for a table its own auth server fills.
	CreatesSessions() bool
	// RevokesUsers is false for a table without a user column.
	RevokesUsers() bool
}

// Admin creates and revokes sessions, dropping cache entries before it
// answers.
type Admin struct {
	store AdminStore
	cache *cache.Cache // nil: no cache to drop entries from
	o     AdminOptions
}

// NewAdmin returns the admin operations; c may be nil (database-only mode).
func NewAdmin(store AdminStore, c *cache.Cache, o AdminOptions) *Admin {
	if o.DBTimeout <= 0 {
		o.DBTimeout = 2 * time.Second
	}
	if o.RedisTimeout <= 0 {
		o.RedisTimeout = time.Second
	}
	return &Admin{store: store, cache: c, o: o}
}

// storeErr turns the store's errors into the ones callers decide on.
func storeErr(err error) error {
	switch {
	case errors.Is(err, pg.ErrNotFound):
		return ErrNotFound
	case pg.IsInvalidInput(err):
		return fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return err
}

// CanCreate reports whether Create can work for this source.
func (a *Admin) CanCreate() bool { return a.store.CreatesSessions() }

// CanRevokeUsers reports whether RevokeUser can work for this source.
func (a *Admin) CanRevokeUsers() bool { return a.store.RevokesUsers() }

// Create issues a new token for userID, valid for ttl. The token is returned
// once and stored only as its hash.
func (a *Admin) Create(ctx context.Context, userID string, ttl time.Duration) (string, *session.Session, error) {
	token, err := session.NewToken()
	if err != nil {
		return "", nil, fmt.Errorf("generate token: %w", err)
	}
	h := session.HashToken(token)
	dctx, cancel := context.WithTimeout(ctx, a.o.DBTimeout)
	defer cancel()
	sess, err := a.store.Create(dctx, userID, h, ttl)
	if err != nil {
		return "", nil, storeErr(err)
	}
	// A negative entry for this hash cannot exist in practice (fresh random
	// token), but dropping it keeps the rule simple: after an insert, the
	// cache says nothing against the new session. Its failure is ignored:
	// the session is committed, and failing the create would lose the only
	// copy of its token and make session creation depend on Redis.
	_ = a.invalidate(ctx, cache.Drop, h)
	return token, sess, nil
}

// Revoke revokes one session. ErrNotFound when there is none.
func (a *Admin) Revoke(ctx context.Context, id string) error {
	dctx, cancel := context.WithTimeout(ctx, a.o.DBTimeout)
	defer cancel()
	h, err := a.store.RevokeByID(dctx, id)
	if err != nil {
		return storeErr(err)
	}
	return a.invalidate(ctx, cache.Revoke, h)
}

// RevokeUser revokes every live session of a user and returns how many. It
// drops the cache entries of all the user's revoked sessions, not only the
// ones it revoked, so a retry after ErrCacheInvalidation finishes the job.
func (a *Admin) RevokeUser(ctx context.Context, userID string) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, a.o.DBTimeout)
	defer cancel()
	n, hashes, err := a.store.RevokeByUser(dctx, userID)
	if err != nil {
		return 0, storeErr(err)
	}
	return n, a.invalidate(ctx, cache.Revoke, hashes...)
}

// invalidate drops entries whether or not the cache is switched on for
// validations: entries filled before a rollback must not survive it. It goes
// around the breaker: an admin call must try Redis even when validations have
// given up on it.
// op is cache.Revoke for revocations (fills held for a moment) and
// cache.Drop after an insert.
func (a *Admin) invalidate(ctx context.Context, op func(session.Hash) cache.Op, hashes ...session.Hash) error {
	c := a.cache
	if c == nil || len(hashes) == 0 {
		return nil
	}
	if a.o.Forget != nil {
		defer a.o.Forget(hashes...)
	}
	ops := make([]cache.Op, len(hashes))
	for i, h := range hashes {
		ops[i] = op(h)
	}
	cctx, cancel := context.WithTimeout(ctx, a.o.RedisTimeout)
	defer cancel()
	if _, err := c.Apply(cctx, ops); err != nil {
		return fmt.Errorf("%w: %v", ErrCacheInvalidation, err)
	}
	return nil
}

var _ AdminStore = (*pg.Store)(nil)
