// Command invalidator tails Postgres logical replication of the sessions
// table and keeps the Redis session cache right. See docs/invalidator.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/app"
	"github.com/sessionguard/sessionguard/internal/config"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

// run is main with its inputs and outputs passed in. Exit codes: 0 success
// (including a shutdown on SIGTERM/SIGINT), 1 failure, 2 bad usage or
// configuration.
func run(args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	cfg, err := config.LoadInvalidator(args, getenv)
	var help config.ErrHelp
	if errors.As(err, &help) {
		fmt.Fprint(stdout, help.Usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "invalidator: configuration: %v\n", err)
		return 2
	}
	log := app.NewLogger("invalidator", cfg.LogLevel, stderr)
	defer func() { _ = log.Sync() }()
	redis.SetLogger(app.RedisLogger{S: log.Named("go-redis").Sugar()})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal, restore the default handling: a second Ctrl-C
	// ends a shutdown that hangs.
	go func() { <-ctx.Done(); stop() }()
	if err := app.RunInvalidator(ctx, cfg, log); err != nil {
		log.Error("invalidator failed", zap.Error(err))
		return 1
	}
	log.Info("invalidator stopped")
	return 0
}
