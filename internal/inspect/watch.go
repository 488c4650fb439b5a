package inspect

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// maxLogged bounds the entries a Watch remembers having reported.
const maxLogged = 10000

// WatchOptions configure a Watch.
type WatchOptions struct {
	Interval time.Duration // between the end of one sample and the start of the next
	Sample   int           // entries per sample
	Metrics  *Metrics
	Logger   *zap.Logger
}

// Watch is the invalidator's continuous sampled check: an Inspector run on
// a few entries at a time, whose findings go to counters and the log. It
// only reads the cache.
type Watch struct {
	in  *Inspector
	o   WatchOptions
	log *zap.Logger
	// logged: redis keys reported, and whether under a watermark past
	// them; each is reported once, and once more if it becomes so.
	logged map[string]bool
}

// NewWatch returns a Watch of in.
func NewWatch(in *Inspector, o WatchOptions) *Watch {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Watch{in: in, o: o, log: o.Logger, logged: map[string]bool{}}
}

// Run samples every interval until ctx ends. The invalidator runs it for as
// long as it is the active consumer.
func (w *Watch) Run(ctx context.Context) {
	for {
		if sleep(ctx, w.o.Interval) != nil {
			return
		}
		w.round(ctx)
	}
}

// round runs one sample.
func (w *Watch) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second+w.in.Grace())
	defer cancel()
	r, err := w.in.Inspect(rctx, w.o.Sample)
	if err != nil {
		if ctx.Err() == nil {
			w.o.Metrics.failed()
			w.log.Warn("sampled cache check failed", zap.Error(err))
		}
		return
	}
	w.o.Metrics.round(r)
	for _, d := range r.Disagreements {
		if covered, ok := w.logged[d.RedisKey]; ok && (covered || !d.Covered) {
			continue
		}
		if len(w.logged) >= maxLogged {
			clear(w.logged)
		}
		w.logged[d.RedisKey] = d.Covered
		fields := []zap.Field{zap.String("kind", string(d.Kind)), zap.String("session_id", d.SessionID),
			zap.String("redis_key", d.RedisKey), zap.Strings("differs", d.Differs),
			zap.Duration("disagreeing_for", d.For), zap.Duration("ttl_left", d.TTL),
			zap.Bool("watermark_past_it", d.Covered), zap.String("action", Advice(d.Kind, d.Covered))}
		if !d.Since.IsZero() {
			fields = append(fields, zap.Time("since", d.Since))
		}
		switch {
		case !d.Covered:
			// The invalidator is behind: watermark_age_seconds says so,
			// and validators distrust the cache past MAX_STALENESS.
			w.log.Info("cache entry disagrees with postgres while the watermark lags", fields...)
		case d.Kind == KindNegative:
			w.o.Metrics.disagreement(d.Kind)
			w.log.Warn("cache entry refuses a session postgres has valid", fields...)
		default:
			w.o.Metrics.disagreement(d.Kind)
			w.log.Error("cache entry disagrees with postgres past the grace", fields...)
		}
	}
}
