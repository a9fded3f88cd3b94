package observe_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/svckit/svckit/framework/observe"
)

// A service's main builds its tracing from the environment. With
// OTEL_TRACES_EXPORTER=none (or no exporter set at all) tracing is off: the
// provider is nil and the framework installs no tracing. The propagator
// follows OTEL_PROPAGATORS either way.
func Example() {
	// As a deployment would set them.
	for k, v := range map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_PROPAGATORS": "tracecontext"} {
		old, had := os.LookupEnv(k)
		if err := os.Setenv(k, v); err != nil {
			log.Fatal(err)
		}
		defer func() {
			if had {
				_ = os.Setenv(k, old)
			} else {
				_ = os.Unsetenv(k)
			}
		}()
	}

	ctx := context.Background()
	tracing, err := observe.NewTracing(ctx, "greeter")
	if err != nil {
		log.Fatal(err)
	}
	defer tracing.Shutdown(ctx)
	fmt.Println("tracing on:", tracing.TracerProvider() != nil)
	fmt.Println("propagated headers:", tracing.Propagator().Fields())
	// Output:
	// tracing on: false
	// propagated headers: [traceparent tracestate]
}
