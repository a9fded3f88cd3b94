package lifecycle

import (
	"fmt"

	"github.com/oklog/run"
)

// ActorError says which actor ended a group and why.
type ActorError struct {
	Actor string
	Err   error
}

func (e *ActorError) Error() string { return fmt.Sprintf("%s: %v", e.Actor, e.Err) }

// Unwrap returns the actor's error.
func (e *ActorError) Unwrap() error { return e.Err }

// Group runs named actors and stops them in the order they were added. The
// zero value is ready to use; a Group runs once.
type Group struct {
	g run.Group
}

// Add adds an actor. execute must return once interrupt has been called;
// interrupt is called once, after execute of every actor added earlier has
// returned, and may block until its actor has stopped.
func (g *Group) Add(name string, execute func() error, interrupt func(error)) {
	done := make(chan struct{})
	g.g.Add(func() error {
		defer close(done)
		if err := execute(); err != nil {
			return &ActorError{Actor: name, Err: err}
		}
		return nil
	}, func(err error) {
		interrupt(err)
		<-done
	})
}

// Run runs every actor concurrently until the first returns, stops the
// others in order, and returns the first actor's error as an *ActorError
// (nil if it returned nil).
func (g *Group) Run() error {
	return g.g.Run()
}
