package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// ACL passwords of the documented Redis users, as the tests set them.
const (
	ValidatorRedisPassword   = "validator-password-0123456789abcdef"
	InvalidatorRedisPassword = "invalidator-password-0123456789abcdef"
)

// LoadACL sets up the Redis users of deploy/redis/acl.redis on r by running
// the shell pipeline its header documents (sed, then redis-cli as r's
// default user), and returns the REDIS_URL of each user.
func LoadACL(t testing.TB, r *Redis) (validatorURL, invalidatorURL string) {
	t.Helper()
	runACLPipeline(t, r)
	url := func(user, pass string) string { return fmt.Sprintf("redis://%s:%s@%s/0", user, pass, r.Addr()) }
	vURL, iURL := url("sg-validator", ValidatorRedisPassword), url("sg-invalidator", InvalidatorRedisPassword)
	for _, u := range []string{vURL, iURL} {
		o, _ := redis.ParseURL(u)
		c := redis.NewClient(o)
		err := c.Ping(context.Background()).Err()
		_ = c.Close()
		if err != nil {
			t.Fatalf("user %s cannot log in with its password after the pipeline: %v", o.Username, err)
		}
	}
	return vURL, iURL
}

// LoadACL sets the users up on every node of the cluster, as the file's
// header says, and returns each user's cluster REDIS_URL.
func (c *Cluster) LoadACL(t testing.TB) (validatorURL, invalidatorURL string) {
	t.Helper()
	for _, r := range append(append([]*Redis{}, c.Masters...), c.Replicas...) {
		runACLPipeline(t, r)
	}
	url := func(user, pass string) string {
		return strings.Replace(c.URL(), "redis://", "redis://"+user+":"+pass+"@", 1)
	}
	return url("sg-validator", ValidatorRedisPassword), url("sg-invalidator", InvalidatorRedisPassword)
}

// runACLPipeline runs the pipeline of deploy/redis/acl.redis on r.
func runACLPipeline(t testing.TB, r *Redis) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	path := filepath.Join(root, "deploy", "redis", "acl.redis")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The pipeline: the comment lines from "sed" to the first redis-cli.
	var pipeline []string
	for _, line := range strings.Split(string(b), "\n") {
		cmd, ok := strings.CutPrefix(line, "#   ")
		if !ok || (len(pipeline) == 0 && !strings.HasPrefix(cmd, "sed ")) {
			continue
		}
		pipeline = append(pipeline, strings.TrimSpace(cmd))
		if strings.Contains(cmd, "redis-cli") {
			break
		}
	}
	if len(pipeline) == 0 || !strings.Contains(pipeline[len(pipeline)-1], "redis-cli") {
		t.Fatalf("%s documents no sed | redis-cli pipeline in its header", path)
	}
	dir := t.TempDir()
	for name, pw := range map[string]string{"validator.pw": ValidatorRedisPassword, "invalidator.pw": InvalidatorRedisPassword} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(pipeline, "\n"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ADMIN_REDIS_URL="+r.URL())
	// The pipeline names the file relative to the repository's root.
	if err := os.Symlink(filepath.Join(root, "deploy"), filepath.Join(dir, "deploy")); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "OK") != 2 {
		t.Fatalf("the pipeline of %s: %v\n%s", path, err, out)
	}
}
