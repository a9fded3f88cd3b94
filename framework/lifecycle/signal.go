package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// ErrSignal is wrapped by the error of a stop caused by a signal.
var ErrSignal = errors.New("signal")

// SignalError is the error of a SignalHandler stopped by a signal.
type SignalError struct {
	Signal os.Signal
}

func (e *SignalError) Error() string { return fmt.Sprintf("received %s", e.Signal) }

// Is reports whether target is ErrSignal.
func (e *SignalError) Is(target error) bool { return target == ErrSignal }

// SignalHandler is an actor that ends its group on the first signal, and
// closes Hard on the next one. Once Hard is closed it no longer catches its
// signals: one more gets the default action (for SIGINT and SIGTERM, the
// process ends) unless the program catches it elsewhere. Create it with
// NewSignalHandler and Stop it when the group has returned.
type SignalHandler struct {
	c           chan os.Signal
	first       chan struct{}
	hard        chan struct{}
	interrupted chan struct{}
	stop        chan struct{}
	wg          sync.WaitGroup
	once        sync.Once
	stopOnce    sync.Once
	sig         os.Signal
}

// NewSignalHandler starts listening for sigs, SIGINT and SIGTERM if none.
func NewSignalHandler(sigs ...os.Signal) *SignalHandler {
	if len(sigs) == 0 {
		sigs = []os.Signal{os.Interrupt, syscall.SIGTERM}
	}
	h := &SignalHandler{
		c:           make(chan os.Signal, 2),
		first:       make(chan struct{}),
		hard:        make(chan struct{}),
		interrupted: make(chan struct{}),
		stop:        make(chan struct{}),
	}
	signal.Notify(h.c, sigs...)
	h.wg.Add(1)
	go h.loop()
	return h
}

func (h *SignalHandler) loop() {
	defer h.wg.Done()
	draining := false
	interrupted := h.interrupted
	for {
		select {
		case s := <-h.c:
			if draining {
				// Give the signals back to the runtime before anyone can
				// see Hard, so that the next one gets the default action
				// (for SIGINT and SIGTERM: the process ends) should the
				// hard stop itself hang.
				signal.Stop(h.c)
				close(h.hard)
				return
			}
			h.sig = s
			draining = true
			close(h.first)
		case <-interrupted:
			draining, interrupted = true, nil
		case <-h.stop:
			return
		}
	}
}

// Execute waits for the first signal and returns a *SignalError, or returns
// nil once interrupted.
func (h *SignalHandler) Execute() error {
	select {
	case <-h.first:
		return &SignalError{Signal: h.sig}
	case <-h.interrupted:
		return nil
	}
}

// Interrupt makes Execute return; a signal after it closes Hard.
func (h *SignalHandler) Interrupt(error) {
	h.once.Do(func() { close(h.interrupted) })
}

// Hard is closed when a signal arrives while the group is already stopping:
// the caller should cut every wait short. From then on a further signal is
// not caught.
func (h *SignalHandler) Hard() <-chan struct{} { return h.hard }

// Stop stops listening for signals.
func (h *SignalHandler) Stop() {
	h.stopOnce.Do(func() {
		signal.Stop(h.c)
		close(h.stop)
		h.wg.Wait()
	})
}
