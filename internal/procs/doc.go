// Package procs runs the project's own validator and invalidator binaries
// as child processes, for cmd/demo and cmd/bench: it builds them, starts
// one as a service with its log in a file, waits for it to be ready, and
// stops it as an orchestrator would.
//
//	build.go   ModuleRoot, Build: compile cmd/validator and cmd/invalidator
//	env.go     BaseEnv: the clean environment the services start with
//	start.go   Start, Proc: one service on a free loopback port, logging to a file
//	ready.go   WaitReady: poll GET /readyz until it answers 200
//	stop.go    Stop: SIGTERM, then SIGKILL after a grace period
//	log.go     LogTail: the end of a service's log, for error messages
//	dir.go     RemoveDir: clean up the folder of binaries and logs
package procs
