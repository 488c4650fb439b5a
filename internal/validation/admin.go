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

// AdminStore is what the admin operations need of Postgres.
type AdminStore interface {
	Create(ctx context.Context, userID string, h session.Hash, ttl time.Duration) (*session.Session, error)
	RevokeByID(ctx context.Context, id string) (session.Hash, error)
	RevokeByUser(ctx context.Context, userID string) (int, []session.Hash, error)
}

// Admin creates and revokes sessions, dropping cache entries before it
// answers.
type Admin struct {
	store AdminStore
	svc   *Service
}

// NewAdmin returns the admin operations; svc supplies the cache (if any).
func NewAdmin(store AdminStore, svc *Service) *Admin { return &Admin{store: store, svc: svc} }

// Create issues a new token for userID, valid for ttl. The token is returned
// once and stored only as its hash.
func (a *Admin) Create(ctx context.Context, userID string, ttl time.Duration) (string, *session.Session, error) {
	token, err := session.NewToken()
	if err != nil {
		return "", nil, fmt.Errorf("generate token: %w", err)
	}
	h := session.HashToken(token)
	dctx, cancel := context.WithTimeout(ctx, a.svc.o.DBTimeout)
	defer cancel()
	sess, err := a.store.Create(dctx, userID, h, ttl)
	if err != nil {
		return "", nil, err
	}
	// A negative entry for this hash cannot exist in practice (fresh random
	// token), but dropping it keeps the rule simple: after an insert, the
	// cache says nothing against the new session. Its failure is ignored:
	// the session is committed, and failing the create would lose the only
	// copy of its token and make session creation depend on Redis.
	_ = a.invalidate(ctx, cache.Drop, h)
	return token, sess, nil
}

// Revoke revokes one session. pg.ErrNotFound when there is none.
func (a *Admin) Revoke(ctx context.Context, id string) error {
	dctx, cancel := context.WithTimeout(ctx, a.svc.o.DBTimeout)
	defer cancel()
	h, err := a.store.RevokeByID(dctx, id)
	if err != nil {
		return err
	}
	return a.invalidate(ctx, cache.Revoke, h)
}

// RevokeUser revokes every live session of a user and returns how many. It
// drops the cache entries of all the user's revoked sessions, not only the
// ones it revoked, so a retry after ErrCacheInvalidation finishes the job.
func (a *Admin) RevokeUser(ctx context.Context, userID string) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, a.svc.o.DBTimeout)
	defer cancel()
	n, hashes, err := a.store.RevokeByUser(dctx, userID)
	if err != nil {
		return 0, err
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
	c := a.svc.Cache()
	if c == nil || len(hashes) == 0 {
		return nil
	}
	ops := make([]cache.Op, len(hashes))
	for i, h := range hashes {
		ops[i] = op(h)
	}
	cctx, cancel := context.WithTimeout(ctx, a.svc.o.RedisTimeout)
	defer cancel()
	if _, err := c.Apply(cctx, ops); err != nil {
		return fmt.Errorf("%w: %v", ErrCacheInvalidation, err)
	}
	return nil
}

var _ AdminStore = (*pg.Store)(nil)
