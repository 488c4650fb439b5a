package procs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries are the paths of the two commands Build compiled.
type Binaries struct {
	Validator   string
	Invalidator string
}

func binariesIn(dir string) Binaries {
	return Binaries{Validator: filepath.Join(dir, "validator"), Invalidator: filepath.Join(dir, "invalidator")}
}

// ModuleRoot is the folder of this repository's go.mod, as goBin sees it
// from the working directory, so a command can be started from any folder
// inside the repository. cmd names the command for the error outside it.
func ModuleRoot(goBin, cmd string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the %s from inside the sessionguard repository (go run ./cmd/%s)", cmd, cmd)
	}
	return filepath.Dir(mod), nil
}

// Build compiles cmd/validator and cmd/invalidator of the module in root
// into dir with goBin: flags go to go build (e.g. -trimpath), env is added
// to the go command's environment (e.g. CGO_ENABLED=0).
func Build(ctx context.Context, goBin, root, dir string, flags, env []string) (Binaries, error) {
	args := append(append([]string{"build"}, flags...), "-o", dir+string(os.PathSeparator), "./cmd/validator", "./cmd/invalidator")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return binariesIn(dir), nil
}
