package main

import (
	"errors"
	"testing"
)

func TestCommandError(t *testing.T) {
	t.Parallel()
	exit := errors.New("exit status 1")
	tests := []struct{ out, want string }{
		{`{"level":"info","msg":"x"}` + "\n" + `{"level":"error","msg":"validator failed","command":"migrate","error":"connect:\n\tdial: refused"}` + "\n", "connect: dial: refused"},
		{"validator: DATABASE_URL is required\n", "validator: DATABASE_URL is required"},
		{"", "exit status 1"},
	}
	for _, tt := range tests {
		if got := commandError([]byte(tt.out), exit); got != tt.want {
			t.Errorf("commandError(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}
