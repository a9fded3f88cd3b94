package framework_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/internal/logsink"
)

// serverBin is the test server binary, built once by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "framework-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "testserver")
	out, err := exec.Command("go", "build", "-race", "-o", serverBin, "./testdata/testserver").CombinedOutput()
	if err != nil && runtime.GOOS == "linux" {
		// -race needs cgo; fall back to a plain build.
		out, err = exec.Command("go", "build", "-o", serverBin, "./testdata/testserver").CombinedOutput()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build testserver: %v\n%s", err, out)
		os.Exit(1)
	}
	var opts []goleak.Option
	for _, f := range etcdtest.PeerLeaks {
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

// proc is a test server running as a child process.
type proc struct {
	cmd    *exec.Cmd
	out    *logsink.Buffer
	addr   string
	admin  string
	exited chan struct{}
	err    error
}

var servingRE = regexp.MustCompile(`msg=serving .*addr=(\S+) admin=(\S*)`)

// startProc starts the test server with args and env and, unless
// wantServing is false, waits until it logs that it serves.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := launch(t, env, args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingRE.FindStringSubmatch(p.out.String()); m != nil {
			p.addr, p.admin = m[1], m[2]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("test server exited before serving: %v\n%s", p.err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("test server not serving after 30s:\n%s", p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// launch starts the test server without waiting for it; it is killed at
// cleanup if still running.
func launch(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(serverBin, args...)
	// The race runtime sleeps 1s at exit by default; the tests time exits.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	out := &logsink.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start test server: %v", err)
	}
	p := &proc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("test server %s output:\n%s", p.addr, p.out)
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("signal %s: %v", s, err)
	}
}

// wait waits for the process to exit within d and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("test server did not exit within %s:\n%s", d, p.out)
		return -1
	}
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
