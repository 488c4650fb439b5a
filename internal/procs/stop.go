package procs

import (
	"syscall"
	"time"
)

// stopGrace is how long a service has to shut down after SIGTERM.
const stopGrace = 10 * time.Second

// Stop sends SIGTERM (the graceful shutdown the services promise) and
// kills the process if it has not exited within 10 seconds.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
