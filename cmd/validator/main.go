// Command validator answers "is this session token valid?" over HTTP, from
// Redis with a Postgres fallback. `validator migrate` applies the schema;
// `validator inspect` checks the cache against Postgres.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/app"
	"github.com/sessionguard/sessionguard/internal/config"
)

const usage = `Usage: validator [serve|migrate|inspect] [flags]

  serve     answer validations over HTTP (the default)
  migrate   apply the database schema and the publication, then exit (idempotent);
            -revoke-public-emit-message also revokes EXECUTE on
            pg_logical_emit_message from PUBLIC (needs a superuser)
  inspect   compare cache entries with Postgres and report those that disagree
            for longer than MAX_STALENESS (-sample n, -all, -json); exit status
            0 all agree, 1 some disagree, 2 bad flags or settings, 3 Redis or
            Postgres cannot be read, 4 interrupted or the report not written

`

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

// run is main with its inputs and outputs passed in. Exit codes: 0 success
// (serve, migrate: including a shutdown on SIGTERM/SIGINT), 1 failure
// (inspect: an entry disagrees), 2 bad usage or configuration, 3 inspect
// could not read Redis or Postgres, 4 inspect interrupted (SIGTERM/SIGINT)
// or its report not written.
func run(args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "migrate", "inspect":
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "validator: unknown command %q (commands: serve, migrate, inspect; -h for help)\n", cmd)
		return 2
	}
	var (
		mcfg config.Migrate
		icfg config.Inspect
		err  error
	)
	switch cmd {
	case "migrate":
		mcfg, err = config.LoadMigrate(args, getenv)
	case "inspect":
		icfg, err = config.LoadInspect(args, getenv)
		mcfg.Validator = icfg.Validator
	default:
		mcfg.Validator, err = config.LoadValidator(args, getenv)
	}
	cfg := mcfg.Validator
	var help config.ErrHelp
	if errors.As(err, &help) {
		fmt.Fprint(stdout, usage+help.Usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "validator: %v\n", err)
		return 2
	}
	log := app.NewLogger("validator", cfg.LogLevel, stderr)
	defer func() { _ = log.Sync() }()
	// go-redis logs through a package-level logger of its own; keep its
	// lines (dial failures during an outage) in the structured log.
	redis.SetLogger(app.RedisLogger{S: log.Named("go-redis").Sugar()})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal, restore the default handling: a second Ctrl-C
	// ends a shutdown that hangs.
	go func() { <-ctx.Done(); stop() }()
	switch cmd {
	case "inspect":
		r, err := app.Inspect(ctx, icfg, stdout)
		var (
			bad   app.SettingsError
			write app.WriteError
		)
		switch {
		case errors.As(err, &bad):
			fmt.Fprintf(stderr, "validator: %v\n", err)
			return 2
		case errors.As(err, &write):
			fmt.Fprintf(stderr, "validator inspect: %v\n", err)
			return 4
		case err != nil && ctx.Err() != nil:
			fmt.Fprintln(stderr, "validator inspect: interrupted")
			return 4
		case err != nil:
			fmt.Fprintf(stderr, "validator inspect: cannot inspect the cache: %v\n", err)
			return 3
		}
		if r.Disagrees() {
			return 1
		}
		return 0
	case "migrate":
		err = app.Migrate(ctx, mcfg, log)
	default:
		err = app.Run(ctx, cfg, log)
	}
	if err != nil {
		log.Error("validator failed", zap.String("command", cmd), zap.Error(err))
		return 1
	}
	return 0
}
