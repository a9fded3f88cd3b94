package lifecycle_test

import (
	"errors"
	"fmt"

	"github.com/svckit/svckit/framework/lifecycle"
)

// Actors stop in the order they were added, each after the one before has
// returned.
func Example() {
	var g lifecycle.Group
	add := func(name string) {
		quit := make(chan struct{})
		g.Add(name,
			func() error { <-quit; fmt.Println(name, "stopped"); return nil },
			func(error) { fmt.Println(name, "interrupted"); close(quit) })
	}
	g.Add("trigger", func() error { return errors.New("disk full") }, func(error) {})
	add("deregister")
	add("server")
	add("telemetry")
	fmt.Println("run:", g.Run())
	// Output:
	// deregister interrupted
	// deregister stopped
	// server interrupted
	// server stopped
	// telemetry interrupted
	// telemetry stopped
	// run: trigger: disk full
}
