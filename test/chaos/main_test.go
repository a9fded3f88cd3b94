// Package chaos is svckit's fault-injection suite: real etcd, servers as
// real child processes, closed-loop load from client.Dial clients that
// records every call, and a fault per scenario. Each scenario asserts its
// pass figure and prints it; the table of figures is printed at the end.
//
// It runs only when SVCKIT_CHAOS=1, on its own so that other packages'
// tests do not share the two cores with it:
//
//	SVCKIT_CHAOS=1 go test -race -count=1 -v -timeout 10m ./test/chaos
package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/etcdtest"
)

// serverBin is the chaos server and loadgenBin the load generator, built
// once by TestMain.
var serverBin, loadgenBin string

func TestMain(m *testing.M) {
	if os.Getenv("SVCKIT_CHAOS") != "1" {
		fmt.Println("chaos suite skipped: run it with SVCKIT_CHAOS=1 go test -race -count=1 -v ./test/chaos")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The servers and the load generator are built without -race: the
	// suite needs their throughput, and the framework's own tests run the
	// same code raced.
	serverBin, loadgenBin = filepath.Join(dir, "chaosserver"), filepath.Join(dir, "loadgen")
	for _, bin := range []string{serverBin, loadgenBin} {
		if out, err := exec.Command("go", "build", "-o", bin, "./testdata/"+filepath.Base(bin)).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", filepath.Base(bin), err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(leakOptions()...); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				code = 1
			}
		}
	}()
	printFigures()
	os.Exit(code)
}

// leakOptions are the goroutines goleak may find: etcd's own, left by
// in-process clusters.
func leakOptions() []goleak.Option {
	// etcdtest.Kill stops a member in-process as a crash would; a peer's
	// version request caught in that stop stays blocked on the closed
	// backend (a crashed process would take it along).
	opts := []goleak.Option{goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.newPeerHandler.versionHandler.func1")}
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	return opts
}

// leakCheck makes t fail if goroutines of its scenario outlive it, once
// every other cleanup of t has run (etcd, servers, clients).
func leakCheck(t *testing.T) {
	t.Cleanup(func() {
		if err := goleak.Find(leakOptions()...); err != nil {
			t.Errorf("goroutines left by the scenario: %v", err)
		}
	})
}

// figures collects each scenario's pass figures for the final table.
var figures struct {
	sync.Mutex
	rows [][3]string
}

// figure records and logs one measured figure of a scenario next to the
// bound it was held to.
func figure(t *testing.T, what, measured, bound string) {
	t.Helper()
	t.Logf("FIGURE %s: %s (bound %s)", what, measured, bound)
	figures.Lock()
	figures.rows = append(figures.rows, [3]string{t.Name() + ": " + what, measured, bound})
	figures.Unlock()
}

func printFigures() {
	figures.Lock()
	defer figures.Unlock()
	if len(figures.rows) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("\n| scenario: figure | measured | bound |\n| --- | --- | --- |\n")
	for _, r := range figures.rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.TrimPrefix(r[0], "Test"), r[1], r[2])
	}
	fmt.Print(b.String())
}
