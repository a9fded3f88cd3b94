// Package fleet is svckit's fleet tier: the conditions real fleets run in,
// through every balancing mode. Each test starts a real etcd, three FileSrv
// instances on one shared root and two instances of a second service, all
// as child processes, and drives a mix of long downloads (held open for
// seconds) and short unary calls to both services — through the thick
// client (client.Dial), through `svckit xds` with a plain grpc-go xDS
// client, and through `svckit proxy` with a plain grpc-go client. Faults
// run under that load: rolling restarts of both services, `svckit xds`
// restarted while etcd is down, and an etcd that speaks only mutual TLS.
//
// It runs only when SVCKIT_FLEET=1, on its own, as .ci/run does:
//
//	SVCKIT_FLEET=1 go test -race -count=1 -v -timeout 10m ./test/fleet
package fleet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/etcdtest"
)

// The binaries the tier runs, built once by TestMain without -race: the
// tier needs their throughput, and their packages' own tests run raced.
var bins = map[string]string{
	"fileserver":  "../../examples/fileserver/cmd/fileserver",
	"sleeper":     "./testdata/sleeper",
	"plainclient": "./testdata/plainclient",
	"svckit":      "../../cmd/svckit",
}

func TestMain(m *testing.M) {
	if os.Getenv("SVCKIT_FLEET") != "1" {
		fmt.Println("fleet tier skipped: run it with SVCKIT_FLEET=1 go test -race -count=1 -v ./test/fleet")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "fleet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for name, pkg := range bins {
			bin := filepath.Join(dir, name)
			if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
			bins[name] = bin
		}
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(leakOptions()...); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				code = 1
			}
		}
		return code
	}()
	os.Exit(code)
}

func leakOptions() []goleak.Option {
	var opts []goleak.Option
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	return opts
}
