package xds_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// clientBin is examples/fileserver/cmd/xdsclient and serverBin the
// framework's test server, built once by TestMain.
var clientBin, serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xds-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clientBin = filepath.Join(dir, "xdsclient")
	if out, err := exec.Command("go", "build", "-o", clientBin, "../../examples/fileserver/cmd/xdsclient").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xdsclient: %v\n%s", err, out)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "testserver")
	if out, err := exec.Command("go", "build", "-o", serverBin, "../testdata/testserver").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testserver: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
