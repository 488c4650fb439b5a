package main

import (
	"strings"
	"testing"
)

func TestParsePostgresVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		out     string
		want    int
		wantErr bool
	}{
		{out: "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n", want: 15},
		{out: "postgres (PostgreSQL) 17.2\n", want: 17},
		{out: "postgres (PostgreSQL) 9.6.24\n", want: 9},
		{out: "postgres (PostgreSQL) 16beta1\n", want: 16},
		{out: "command not found", wantErr: true},
		{out: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parsePostgresVersion(tt.out)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parsePostgresVersion(%q) = %d, %v; want %d, error %v", tt.out, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestCheckPrereqsReportsWhatToInstall runs the check with an empty PATH and
// no Postgres bin dir: the error must name the apt packages to install.
func TestCheckPrereqsReportsWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("PG_BINDIR", t.TempDir()) // exists, but holds no postgres
	t.Setenv("REDIS_BINDIR", "")
	_, err := checkPrereqs()
	miss, ok := err.(missingError)
	if !ok {
		t.Fatalf("checkPrereqs() error = %v (%T), want a missingError", err, err)
	}
	msg := miss.Error()
	for _, want := range []string{"sudo apt-get install -y postgresql redis-server", "https://go.dev/dl/"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message does not mention %q:\n%s", want, msg)
		}
	}
}
