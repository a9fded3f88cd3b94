package proc

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// BuildRace builds the main package pkg (as `go build` names it, relative
// to the working directory) into dir, with the race detector where it
// builds (it needs cgo) and without it otherwise, and returns the binary's
// path.
func BuildRace(dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-race", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		out, err = exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	}
	if err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}
