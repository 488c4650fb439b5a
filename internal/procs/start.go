package procs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

// Proc is one of the project's services, started by Start.
type Proc struct {
	Name    string
	URL     string // http://127.0.0.1:port
	LogPath string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // exit status, valid once exited is closed
}

// Start starts bin as the service name on a free loopback port (its
// LISTEN_ADDR), with BaseEnv and env, its stdout and stderr going to
// dir/name.log.
func Start(dir, name, bin string, env []string) (*Proc, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: name, URL: fmt.Sprintf("http://127.0.0.1:%d", port),
		LogPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.LogPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(append(BaseEnv(), env...), fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: Ctrl-C reaches only the caller, which then stops
	// the services in order. Pdeathsig: if the caller is killed outright,
	// they go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.exited }

// Err is the process's exit status, once Done is closed.
func (p *Proc) Err() error {
	<-p.exited
	return p.err
}
