package lifecycle_test

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/lifecycle"
	"github.com/svckit/svckit/internal/proc"
)

// childEnv makes the test binary, run again as a child process, play the
// part named by its value instead of running the tests.
const childEnv = "LIFECYCLE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "hard-stop-hangs" {
		hardStopHangs()
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}

// hardStopHangs is a program whose shutdown hangs even after the hard stop,
// as one stuck in a syscall or a deadlock would.
func hardStopHangs() {
	h := lifecycle.NewSignalHandler()
	var g lifecycle.Group
	g.Add("signals", h.Execute, h.Interrupt)
	g.Add("stuck", func() error {
		<-h.Hard()
		fmt.Println("hard stop")
		time.Sleep(time.Minute) // hangs, but is bounded for the test's sake
		fmt.Println("hung for a minute")
		return nil
	}, func(error) { fmt.Println("stopping") })
	fmt.Println("ready")
	_ = g.Run()
}

func TestGroupErrorNamesTheActor(t *testing.T) {
	var g lifecycle.Group
	boom := errors.New("boom")
	quit := make(chan struct{})
	g.Add("server", func() error { <-quit; return nil }, func(error) { close(quit) })
	g.Add("registrar", func() error { return boom }, func(error) {})
	err := g.Run()
	var ae *lifecycle.ActorError
	if !errors.As(err, &ae) || ae.Actor != "registrar" {
		t.Fatalf("have %v, want an *ActorError of registrar", err)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("have %v, want it to wrap boom", err)
	}
	if have, want := err.Error(), "registrar: boom"; have != want {
		t.Fatalf("message: have %q, want %q", have, want)
	}
}

func TestEmptyGroupReturnsNil(t *testing.T) {
	var g lifecycle.Group
	if err := g.Run(); err != nil {
		t.Fatalf("have %v, want nil", err)
	}
}

// The tests below send real signals to this process; SIGUSR1/SIGUSR2 are
// used so that a missed handler cannot kill the test binary's parent.

func TestSignalStopsTheGroupAndSecondSignalIsHard(t *testing.T) {
	h := lifecycle.NewSignalHandler(syscall.SIGUSR1)
	defer h.Stop()
	var g lifecycle.Group
	g.Add("signals", h.Execute, h.Interrupt)
	drained := make(chan string, 1)
	g.Add("server", func() error {
		<-h.Hard() // a long drain, cut short only by a second signal
		drained <- "hard"
		return nil
	}, func(error) {
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
			t.Errorf("second signal: %v", err)
		}
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	err := g.Run()
	if !errors.Is(err, lifecycle.ErrSignal) {
		t.Fatalf("have %v, want an error wrapping ErrSignal", err)
	}
	var se *lifecycle.SignalError
	if !errors.As(err, &se) || se.Signal != syscall.SIGUSR1 {
		t.Fatalf("have %v, want *SignalError for SIGUSR1", err)
	}
	if have := <-drained; have != "hard" {
		t.Fatalf("have %q", have)
	}
}

func TestSignalAfterOtherCauseIsHard(t *testing.T) {
	h := lifecycle.NewSignalHandler(syscall.SIGUSR2)
	defer h.Stop()
	var g lifecycle.Group
	g.Add("failing", func() error { return errors.New("etcd unreachable") }, func(error) {})
	g.Add("signals", h.Execute, h.Interrupt)
	g.Add("server", func() error {
		select {
		case <-h.Hard():
			return nil
		case <-time.After(time.Minute):
			return errors.New("hard stop never came")
		}
	}, func(error) { _ = syscall.Kill(os.Getpid(), syscall.SIGUSR2) })
	err := g.Run()
	if have, want := err.Error(), "failing: etcd unreachable"; have != want {
		t.Fatalf("have %q, want %q", have, want)
	}
}

// After the hard stop the handler lets go of SIGTERM: a third one ends a
// process whose hard stop hangs, as it would a process without a handler.
func TestThirdSignalEndsProcessWhoseHardStopHangs(t *testing.T) {
	p := proc.StartT(t, os.Args[0], nil, []string{childEnv + "=hard-stop-hangs"})
	step := func(what string) {
		t.Helper()
		if _, err := p.WaitFor(regexp.MustCompile("(?m)^"+what+"$"), 30*time.Second); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	step("ready")
	for _, want := range []string{"stopping", "hard stop"} {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		step(want)
	}
	start := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil {
		t.Fatalf("third SIGTERM: %v (the signal was swallowed)", err)
	}
	if code != -1 {
		t.Fatalf("exit code %d, want -1 (ended by the signal):\n%s", code, p.Output())
	}
	t.Logf("third SIGTERM ended the process in %s", time.Since(start).Round(time.Millisecond))
}
