package validation

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/pg"
)

// IdentityReader reads the identity (pg.IdentitySQL) of the database the
// validator reads; pg.Store is one.
type IdentityReader interface {
	Identity(ctx context.Context) (string, error)
}

// IdentityWatch keeps the validator's own database identity current, so the
// Service trusts only watermarks that vouch for that database and table. A
// re-created sessions table or a DATABASE_URL that now reaches another
// database changes it.
type IdentityWatch struct {
	r       IdentityReader
	log     *zap.Logger
	timeout time.Duration
	cur     atomic.Pointer[string]

	mu      sync.Mutex // serialises Refresh, so transitions log once
	failing bool
}

// NewIdentityWatch returns a watch with an unknown identity; timeout bounds
// each read (default 2s).
func NewIdentityWatch(r IdentityReader, log *zap.Logger, timeout time.Duration) *IdentityWatch {
	if log == nil {
		log = zap.NewNop()
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	w := &IdentityWatch{r: r, log: log, timeout: timeout}
	w.cur.Store(new(string))
	return w
}

// Current is the last identity read; "" while unknown.
func (w *IdentityWatch) Current() string { return *w.cur.Load() }

// Refresh reads the identity once. A failure to reach Postgres keeps the
// last identity (the database did not change because we cannot see it); a
// missing sessions table forgets it.
func (w *IdentityWatch) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	id, err := w.r.Identity(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.Current()
	if err != nil {
		if errors.Is(err, pg.ErrNoSessionsTable) {
			w.cur.Store(new(string))
		}
		if !w.failing {
			w.log.Warn("cannot read the database identity; cache hits are trusted only while it is known",
				zap.String("identity", w.Current()), zap.Error(err))
		}
		w.failing = true
		return err
	}
	if w.failing {
		w.log.Info("database identity readable again")
	}
	w.failing = false
	switch {
	case id == old:
	case old == "":
		w.log.Info("database identity known", zap.String("identity", id))
	default:
		w.log.Warn("database identity changed (sessions table re-created, or DATABASE_URL reaches another database): watermarks of the old one are no longer trusted",
			zap.String("old", old), zap.String("new", id))
	}
	w.cur.Store(&id)
	return nil
}

// Run refreshes every interval until ctx ends; while the identity is
// unknown it retries every second, so the cache serves soon after Postgres
// comes up.
func (w *IdentityWatch) Run(ctx context.Context, every time.Duration) {
	for {
		d := every
		if w.Current() == "" {
			d = min(every, time.Second)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		_ = w.Refresh(ctx)
	}
}

// IsStandbyIdentity reports whether identity was read on a server in
// recovery (a hot standby), whose watermark never matches the primary's.
func IsStandbyIdentity(identity string) bool { return strings.HasSuffix(identity, pg.StandbySuffix) }
