package procs

import "os"

// RemoveDir removes dir, the folder of a run's binaries and service logs.
// After a failure it keeps the logs for reading and removes only the
// binaries, large and of no use for the post-mortem; it says whether it
// kept the folder.
func RemoveDir(dir string, failed bool) (kept bool) {
	if failed {
		bins := binariesIn(dir)
		_ = os.Remove(bins.Validator)
		_ = os.Remove(bins.Invalidator)
		return true
	}
	_ = os.RemoveAll(dir)
	return false
}
