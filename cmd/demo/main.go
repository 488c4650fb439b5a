// Command demo runs sessionguard on this machine with nothing but Go, the
// PostgreSQL server binaries and redis-server installed: it starts a
// throwaway Postgres (wal_level=logical) and Redis on free loopback ports,
// builds and starts the validator and the invalidator, walks through a
// session's life (create, validate from the database then the cache, revoke
// with plain SQL behind the service's back, see the refusal), and then keeps
// everything running for you to try until Ctrl-C.
//
// With -source supabase it does the same on the Supabase auth server's
// schema (auth.users, auth.sessions) instead: it signs users in as the auth
// server does, validates their HS256 access tokens (Bearer and the SSR
// session cookie), refuses forged and expired ones from the token alone, and
// shows a sign-out and a user's deletion, made with plain SQL, refused.
//
//	go run ./cmd/demo                           # walkthrough, then keep running
//	go run ./cmd/demo -exit                     # walkthrough, then stop (exit 1 if a step failed)
//	go run ./cmd/demo -source supabase [-exit]  # the same on Supabase's auth schema
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

	"github.com/sessionguard/sessionguard/internal/source"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

func main() {
	exitAfter := flag.Bool("exit", false, "exit after the walkthrough (status 0 when every step passed) instead of running until Ctrl-C")
	src := flag.String("source", "sessionguard", "the sessions table to demonstrate: sessionguard (its own) or supabase (the Supabase auth server's auth.sessions)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./cmd/demo [-source sessionguard|supabase] [-exit]\n\n"+
			"Starts a throwaway Postgres and Redis, builds and runs the validator and the\n"+
			"invalidator, shows a session created, validated, revoked with SQL and refused.\n"+
			"With -source supabase: the same on the Supabase auth server's schema, its users\n"+
			"signed in and out with SQL, their JWT access tokens validated.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q (flags: -source sessionguard|supabase, -exit)\n", flag.Arg(0))
		os.Exit(2)
	}
	sc, err := scenarioOf(*src)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &demo{out: os.Stdout, sc: sc}
	err = d.run(ctx, *exitAfter)
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

// scenarioOf is the demo of a -source value.
func scenarioOf(name string) (scenario, error) {
	switch name {
	case source.Sessionguard:
		return sessionguardDemo{}, nil
	case source.Supabase:
		return &supabaseDemo{secret: testenv.SupabaseSecret}, nil
	}
	return nil, fmt.Errorf("-source %q: want %s or %s", name, source.Sessionguard, source.Supabase)
}

// printf writes to the demo's output; a failed write to a terminal is not
// worth stopping for.
func printf(w io.Writer, format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
