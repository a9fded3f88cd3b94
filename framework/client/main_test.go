package client_test

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/etcdtest"
	childproc "github.com/svckit/svckit/internal/proc"
)

// serverBin is framework's test server (an App serving testsvc), built
// once by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "client-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if serverBin, err = childproc.BuildRace(dir, "../testdata/testserver"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
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
	os.Exit(code)
}

// leakOptions ignores the goroutines an etcd server leaves behind, plus
// extra.
func leakOptions(extra ...goleak.Option) []goleak.Option {
	opts := extra
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	return opts
}

// proc is the test server running as a child process.
type proc struct {
	*childproc.Proc
	addr string
}

// startProc starts the test server (service "testsvc") with args and waits
// until it serves; it is killed at cleanup if still running.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	// The race runtime sleeps 1s at exit by default; the tests time exits.
	p := &proc{Proc: childproc.StartT(t, serverBin, args, []string{"GORACE=atexit_sleep_ms=0"})}
	var err error
	if p.addr, _, err = p.WaitServing(30 * time.Second); err != nil {
		t.Fatalf("test server: %v", err)
	}
	return p
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("test server: %v:\n%s", err, p.Output())
	}
}

// load makes calls from several workers until stopped, counting calls and
// failures; every loop is bounded in count.
type load struct {
	calls, failures atomic.Int64
	firstErr        atomic.Value
	done            chan struct{}
	wg              sync.WaitGroup
}

// startLoad runs call from workers goroutines, each at most max times.
func startLoad(workers, max int, call func() error) *load {
	l := &load{done: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for range max {
				select {
				case <-l.done:
					return
				default:
				}
				err := call()
				l.calls.Add(1)
				if err != nil {
					l.failures.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	return l
}

// stop ends the load and waits for its workers.
func (l *load) stop() {
	close(l.done)
	l.wg.Wait()
}
