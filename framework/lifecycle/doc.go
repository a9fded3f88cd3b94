// Package lifecycle runs a service's parts as one group and stops them in
// order.
//
// A Group is a github.com/oklog/run group of named actors, each a pair of
// funcs: execute runs until the actor is done, interrupt makes it return.
// When the first actor returns, run.Group interrupts every actor in the order
// they were added; Group adds the wait: an actor is interrupted only after the
// actor added before it has returned. So the order of Add is the order of
// shutdown, which is what a server needs: stop being ready, leave the
// registry, drain, and only then close what the handlers use.
//
// A SignalHandler is the actor that turns SIGINT and SIGTERM into a clean
// stop, and a second signal (or a signal during a shutdown that began for
// another reason) into a hard stop, which run.SignalHandler cannot: it stops
// listening after the first. After the hard stop it lets go of the signals,
// so a third one ends a process whose hard stop hangs.
//
// The package leaves out timeouts: an interrupt that may block must bound
// itself (for example with the hard-stop channel).
package lifecycle
