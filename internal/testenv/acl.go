package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// ACL passwords of the documented Redis users, as the tests set them.
const (
	ValidatorRedisPassword   = "validator-password-0123456789abcdef"
	InvalidatorRedisPassword = "invalidator-password-0123456789abcdef"
)

// LoadACL runs the ACL SETUSER commands of deploy/redis/acl.redis on r, as
// its default user, and returns the REDIS_URL of each documented user.
func LoadACL(t testing.TB, r *Redis) (validatorURL, invalidatorURL string) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "..", "deploy", "redis", "acl.redis")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	admin := RedisClient(t, r)
	pw := strings.NewReplacer("VALIDATOR_PASSWORD", ValidatorRedisPassword, "INVALIDATOR_PASSWORD", InvalidatorRedisPassword)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var args []any
		for _, w := range strings.Fields(pw.Replace(line)) {
			args = append(args, w)
		}
		if err := admin.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("%s: %s: %v", path, strings.Join(strings.Fields(line)[:3], " "), err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%s holds %d commands, want one per user", path, n)
	}
	url := func(user, pass string) string { return fmt.Sprintf("redis://%s:%s@%s/0", user, pass, r.Addr()) }
	return url("sg-validator", ValidatorRedisPassword), url("sg-invalidator", InvalidatorRedisPassword)
}
