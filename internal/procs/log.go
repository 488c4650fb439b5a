package procs

import (
	"os"
	"strings"
)

// tailLines is how much of a log LogTail shows.
const tailLines = 20

// LogTail is the last lines of the service's log, headed by its path, for
// error messages; empty if the log is.
func (p *Proc) LogTail() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return "\n--- last lines of " + p.LogPath + " ---\n" + strings.Join(lines, "\n")
}
