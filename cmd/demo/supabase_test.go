package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestShellVars(t *testing.T) {
	t.Parallel()
	v := &shellVars{path: filepath.Join(t.TempDir(), "walkthrough.env")}
	if err := v.set("V", "http://127.0.0.1:1", "TOKEN", "a.b.c"); err != nil {
		t.Fatal(err)
	}
	if err := v.set("COOKIE", "base64-x"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(v.path)
	if err != nil {
		t.Fatal(err)
	}
	want := "export V='http://127.0.0.1:1'\nexport TOKEN='a.b.c'\nexport COOKIE='base64-x'\n"
	if string(b) != want {
		t.Errorf("file = %q, want %q", b, want)
	}
	if err := v.set("BAD", "it's"); err == nil {
		t.Error("a value with a quote was accepted")
	}
}
