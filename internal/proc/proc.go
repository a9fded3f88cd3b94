// Package proc runs a child process whose output is collected, for tests
// and for the demo: start it, wait for a line that says it is ready, signal
// it, and wait for its exit within a bound.
package proc

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"time"

	"github.com/svckit/svckit/internal/logsink"
)

// Proc is a running (or exited) child process.
type Proc struct {
	cmd    *exec.Cmd
	out    logsink.Buffer
	exited chan struct{}
	err    error
}

// Start runs bin with args, the environment plus env, and stdout and
// stderr collected together.
func Start(bin string, args, env []string) (*Proc, error) {
	p := &Proc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// TB is the part of testing.TB that StartT uses.
type TB interface {
	Helper()
	Fatal(args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// StartT is Start for tests: it fails tb if bin does not start, and kills
// the process when tb ends, logging its output if tb failed.
func StartT(tb TB, bin string, args, env []string) *Proc {
	tb.Helper()
	p, err := Start(bin, args, env)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s %v output:\n%s", bin, args, p.Output())
		}
	})
	return p
}

// servingRE matches the line framework.App logs once it serves: its gRPC
// address and its admin address (empty when off). A compiled regexp is
// read-only.
var servingRE = regexp.MustCompile(`msg=serving .*addr=(\S+) admin=(\S*)`)

// WaitServing waits up to d until the process, a program on framework.App,
// logs that it serves, and returns its gRPC and admin addresses.
func (p *Proc) WaitServing(d time.Duration) (addr, admin string, err error) {
	m, err := p.WaitFor(servingRE, d)
	if err != nil {
		return "", "", err
	}
	return m[1], m[2], nil
}

// Output returns what the process has written so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// WaitFor polls the output every 10ms until re matches, and returns the
// match; it fails if the process exits first or d passes.
func (p *Proc) WaitFor(re *regexp.Regexp, d time.Duration) ([]string, error) {
	deadline := time.Now().Add(d)
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m, nil
		}
		select {
		case <-p.exited:
			// What it wrote last may have come after the check above.
			if m := re.FindStringSubmatch(p.Output()); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("exited (%v) before %s:\n%s", p.err, re, p.Output())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no %s within %s:\n%s", re, d, p.Output())
		}
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to d for the process to exit and returns its exit code.
func (p *Proc) Wait(d time.Duration) (int, error) {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(d):
		return -1, fmt.Errorf("still running after %s", d)
	}
}

// Stop sends sig, waits up to d, kills the process if it is still running,
// and returns its exit code.
func (p *Proc) Stop(sig os.Signal, d time.Duration) int {
	_ = p.Signal(sig)
	if code, err := p.Wait(d); err == nil {
		return code
	}
	p.Kill()
	return p.cmd.ProcessState.ExitCode()
}

// Kill kills the process, if it still runs, and waits for it.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}
