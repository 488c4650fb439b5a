// Command demo runs sessionguard on this machine with nothing but Go, the
// PostgreSQL server binaries and redis-server installed: it starts a
// throwaway Postgres (wal_level=logical) and Redis on free loopback ports,
// builds and starts the validator and the invalidator, walks through a
// session's life (create, validate from the database then the cache, revoke
// with plain SQL behind the service's back, see the refusal), and then keeps
// everything running for you to try until Ctrl-C.
//
//	go run ./cmd/demo          # walkthrough, then keep running
//	go run ./cmd/demo -exit    # walkthrough, then stop (exit 1 if a step failed)
//
// Nothing here touches the machine's own Postgres or Redis; everything lives
// in temporary directories that are removed on exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	exitAfter := flag.Bool("exit", false, "exit after the walkthrough (status 0 when every step passed) instead of running until Ctrl-C")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./cmd/demo [-exit]\n\n"+
			"Starts a throwaway Postgres and Redis, builds and runs the validator and the\n"+
			"invalidator, shows a session created, validated, revoked with SQL and refused.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &demo{out: os.Stdout}
	err := d.run(ctx, *exitAfter)
	d.close(err != nil && !errors.Is(err, context.Canceled))
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(d.out, "stopped.")
	case err != nil:
		var miss missingError
		if errors.As(err, &miss) {
			fmt.Fprintln(os.Stderr, miss.Error())
		} else {
			fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		}
		os.Exit(1)
	}
}

// printf writes to the demo's output; a failed write to a terminal is not
// worth stopping for.
func printf(w io.Writer, format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
