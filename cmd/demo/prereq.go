package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/sessionguard/sessionguard/internal/procs"
	"github.com/sessionguard/sessionguard/internal/testenv"
)

// minPostgres is the oldest PostgreSQL major version the project supports.
const minPostgres = 15

// missingError lists what has to be installed before the demo can run.
type missingError struct {
	what    []string // human descriptions
	apt     []string // Debian/Ubuntu packages that provide them
	manual  []string // things apt cannot fix
	details []string
}

func (m missingError) Error() string {
	var b strings.Builder
	b.WriteString("Missing prerequisites:\n")
	for _, w := range m.what {
		b.WriteString("  - " + w + "\n")
	}
	for _, d := range m.details {
		b.WriteString("    " + d + "\n")
	}
	if len(m.apt) > 0 {
		b.WriteString("\nOn Debian/Ubuntu install them with:\n\n  sudo apt-get install -y " + strings.Join(m.apt, " ") + "\n")
		b.WriteString("\n(or run `make demo`, which installs them itself when run as root with apt-get)\n")
	}
	for _, s := range m.manual {
		b.WriteString("\n" + s + "\n")
	}
	return b.String()
}

// prereqs is what the demo found on the machine.
type prereqs struct {
	goBin      string
	pgBinDir   string
	pgVersion  int
	redisBin   string
	moduleRoot string
}

// checkPrereqs looks for Go, the PostgreSQL 15+ server binaries and
// redis-server, the same way internal/testenv does.
func checkPrereqs() (prereqs, error) {
	var p prereqs
	var miss missingError
	var err error

	if p.goBin, err = exec.LookPath("go"); err != nil {
		miss.what = append(miss.what, "go (needed to build the two services)")
		miss.manual = append(miss.manual, "Install Go from https://go.dev/dl/ (the Debian golang package is too old).")
	} else if p.moduleRoot, err = procs.ModuleRoot(p.goBin, "demo"); err != nil {
		return p, err
	}

	if p.pgBinDir, err = testenv.PostgresBinDir(); err != nil {
		miss.what = append(miss.what, "PostgreSQL server binaries (initdb, postgres)")
		miss.apt = append(miss.apt, "postgresql")
	} else if _, err := os.Stat(filepath.Join(p.pgBinDir, "postgres")); err != nil {
		miss.what = append(miss.what, "PostgreSQL server binaries: no postgres in "+p.pgBinDir+" (from PG_BINDIR?)")
		miss.apt = append(miss.apt, "postgresql")
	} else if p.pgVersion, err = postgresMajor(p.pgBinDir); err != nil {
		return p, err
	} else if p.pgVersion < minPostgres {
		miss.what = append(miss.what, fmt.Sprintf("PostgreSQL %d+ (found %d in %s)", minPostgres, p.pgVersion, p.pgBinDir))
		miss.manual = append(miss.manual, "Your distribution's PostgreSQL is too old: add https://apt.postgresql.org and install postgresql-15 (or newer), or set PG_BINDIR to a 15+ bin folder.")
	}

	if d := os.Getenv("REDIS_BINDIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "redis-server")); err == nil {
			p.redisBin = filepath.Join(d, "redis-server")
		}
	}
	if p.redisBin == "" {
		if p.redisBin, err = exec.LookPath("redis-server"); err != nil {
			miss.what = append(miss.what, "redis-server")
			miss.apt = append(miss.apt, "redis-server")
		}
	}
	if len(miss.what) > 0 {
		return p, miss
	}
	return p, nil
}

var pgVersionRe = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// parsePostgresVersion reads the major version from `postgres --version`
// output, e.g. "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)".
func parsePostgresVersion(out string) (int, error) {
	m := pgVersionRe.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognised postgres --version output %q", strings.TrimSpace(out))
	}
	return strconv.Atoi(m[1])
}

func postgresMajor(bindir string) (int, error) {
	out, err := exec.Command(filepath.Join(bindir, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("run %s/postgres --version: %w", bindir, err)
	}
	return parsePostgresVersion(string(out))
}
