package framework_test

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/etcdtest"
	childproc "github.com/svckit/svckit/internal/proc"
)

// serverBin is the test server binary, built once by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "framework-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if serverBin, err = childproc.BuildRace(dir, "./testdata/testserver"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var opts []goleak.Option
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(opts...); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				code = 1
			}
		}
	}()
	os.Exit(code)
}

// proc is the test server running as a child process.
type proc struct {
	*childproc.Proc
	addr, admin string
}

// startProc starts the test server with args and env and waits until it
// logs that it serves.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := launch(t, env, args...)
	var err error
	if p.addr, p.admin, err = p.WaitServing(30 * time.Second); err != nil {
		t.Fatalf("test server: %v", err)
	}
	return p
}

// launch starts the test server without waiting for it; it is killed at
// cleanup if still running.
func launch(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	// The race runtime sleeps 1s at exit by default; the tests time exits.
	return &proc{Proc: childproc.StartT(t, serverBin, args, append([]string{"GORACE=atexit_sleep_ms=0"}, env...))}
}

func (p *proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.Signal(s); err != nil {
		t.Fatalf("signal %s: %v", s, err)
	}
}

// wait waits for the process to exit within d and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	code, err := p.Wait(d)
	if err != nil {
		t.Fatalf("test server: %v:\n%s", err, p.Output())
	}
	return code
}

// lastLine returns the last non-empty line of s, where a failing main
// prints its one-line error.
func lastLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	last := ""
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

// load makes calls from several workers until stopped, counting calls and
// failures; every loop is bounded in count.
type load struct {
	calls, failures atomic.Int64
	firstErr        atomic.Value
	done            chan struct{}
	wg              sync.WaitGroup
}

// startLoad runs call from workers goroutines, each at most max times,
// pausing between calls.
func startLoad(workers, max int, pause time.Duration, call func() error) *load {
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
				if pause > 0 {
					time.Sleep(pause)
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
