package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL server owned by this process.
type Postgres struct {
	Port   int
	Dir    string // data directory parent (data/, socket, log)
	bindir string
	// settings are extra "name=value" server settings (-c), after the
	// defaults, so they may override them.
	settings []string
	cred     *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// PostgresBinDir finds the folder of the server binaries: $PG_BINDIR,
// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
func PostgresBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(matches)))
	candidates = append(candidates, matches...)
	for _, d := range candidates {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: PostgreSQL server binaries (initdb, postgres) not found; install them with `apt-get install -y postgresql` (Debian/Ubuntu) or set PG_BINDIR", ErrMissing)
}

// StartPostgres initialises a fresh cluster in a temporary directory and
// starts it on a free port with wal_level=logical.
func StartPostgres(ctx context.Context) (*Postgres, error) {
	return StartPostgresWith(ctx)
}

// StartPostgresWith is StartPostgres with extra server settings, each
// "name=value" as postgres -c takes it (for example
// "shared_preload_libraries=pg_stat_statements"); they come after the
// defaults and so may override them, and they stay in force across Stop and
// Start.
func StartPostgresWith(ctx context.Context, settings ...string) (*Postgres, error) {
	bindir, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sessionguard-pg-")
	if err != nil {
		return nil, fmt.Errorf("create postgres temp dir: %w", err)
	}
	p := &Postgres{Dir: dir, bindir: bindir, settings: settings}
	if os.Geteuid() == 0 {
		// Postgres refuses to run as root: hand the directory to "postgres".
		cred, err := postgresUser()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		p.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown postgres temp dir: %w", err)
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bindir, "initdb"),
		"-D", p.dataDir(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		p.Port = port
		if err = p.Start(ctx); err == nil {
			return p, nil
		}
		if attempt == 2 || ctx.Err() != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root, and Postgres needs a non-root user to run as, but there is no \"postgres\" user (install the postgresql package, or run as a normal user): %v", ErrMissing, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }
func (p *Postgres) logPath() string { return filepath.Join(p.Dir, "postgres.log") }

// Start starts the server (again) on p.Port. It is used after Stop to
// simulate a restart.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("postgres already running")
	}
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open postgres log: %w", err)
	}
	if p.cred != nil {
		_ = os.Chown(p.logPath(), int(p.cred.Uid), int(p.cred.Gid))
	}
	args := []string{
		"-D", p.dataDir(),
		"-p", itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + p.Dir,
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=64",
		"-c", "max_wal_senders=64",
		"-c", "max_connections=200",
		// fsync off keeps commits cheap; synchronous_commit stays on, as in
		// production, because logical decoding only sees flushed WAL: with it
		// off, every change would reach the invalidator up to
		// wal_writer_delay (200ms) late.
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "wal_sender_timeout=60s",
		"-c", "shared_buffers=128MB",
		"-c", "log_min_messages=warning",
	}
	for _, s := range p.settings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(filepath.Join(p.bindir, "postgres"), args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Pdeathsig: if the owning process dies without cleaning up, the
	// server goes with it instead of lingering on the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = waitFor(wctx, "postgres", exited, p.logPath(), func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		p.cmd = nil
		return err
	}
	return nil
}

// StartStandby starts a hot standby of p: a base backup streamed from p on
// a free port, following it by streaming replication.
func (p *Postgres) StartStandby(ctx context.Context) (*Postgres, error) {
	dir, err := os.MkdirTemp("", "sessionguard-pg-standby-")
	if err != nil {
		return nil, fmt.Errorf("create standby temp dir: %w", err)
	}
	s := &Postgres{Dir: dir, bindir: p.bindir, cred: p.cred}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown standby temp dir: %w", err)
		}
	}
	backup := exec.CommandContext(ctx, filepath.Join(p.bindir, "pg_basebackup"),
		"-h", "127.0.0.1", "-p", itoa(p.Port), "-U", "postgres", "-D", s.dataDir(), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast")
	backup.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := backup.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	if s.Port, err = FreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Stop shuts the server down ("fast" shutdown: running transactions are
// aborted, clients disconnected). The data directory is kept.
func (p *Postgres) Stop() error { return p.signal(syscall.SIGINT) }

// Kill stops the server abruptly (SIGQUIT: immediate shutdown, crash
// recovery at the next start).
func (p *Postgres) Kill() error { return p.signal(syscall.SIGQUIT) }

func (p *Postgres) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
	return nil
}

// Close stops the server and removes its directory.
func (p *Postgres) Close() error {
	err := p.Kill()
	if rerr := os.RemoveAll(p.Dir); err == nil {
		err = rerr
	}
	return err
}

// URL returns a connection URL for database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// BinDir is the folder of the server binaries (pg_recvlogical, psql, ...).
func (p *Postgres) BinDir() string { return p.bindir }

// CreateDatabase creates a database, optionally from a template, and returns
// its URL.
func (p *Postgres) CreateDatabase(ctx context.Context, name, template string) (string, error) {
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to create database: %w", err)
	}
	defer c.Close(ctx)
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := c.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return p.URL(name), nil
}
