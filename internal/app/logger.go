package app

import (
	"context"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger logs JSON to w at lvl with a "service" field, sampling floods of
// identical messages (a Redis outage would otherwise log one warning per
// request).
func NewLogger(service string, lvl zapcore.Level, w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	core = zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)
	return zap.New(core, zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))).
		With(zap.String("service", service))
}

// RedisLogger adapts zap to go-redis's package-level logger, so that its
// lines (dial failures during an outage) stay in the structured log.
type RedisLogger struct{ S *zap.SugaredLogger }

// Printf logs one go-redis line as a warning.
func (l RedisLogger) Printf(_ context.Context, format string, v ...any) { l.S.Warnf(format, v...) }
