package procs

import "os"

// BaseEnv is a clean environment for the services: only what a process
// needs to run, so stray DATABASE_URL-style variables of the caller's shell
// change neither what the demo shows nor what the bench measures.
func BaseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
