package lifecycle_test

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
