package kit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"
)

// Timeout returns a middleware that gives each call a deadline d from its
// start. If the deadline passes and the endpoint fails, the call fails with
// an error that wraps context.DeadlineExceeded and the endpoint's error.
//
// Timeout only sets the context's deadline: the endpoint must honour ctx,
// as a gRPC client endpoint does. A response that arrives late without an
// error is returned as is, and a call that the caller's own context ends
// first fails with the endpoint's error alone. A non-positive d fails every
// call at once.
func Timeout(d time.Duration) endpoint.Middleware {
	cause := fmt.Errorf("kit: timeout after %s: %w", d, context.DeadlineExceeded)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			deadline := time.Now().Add(d)
			tctx, cancel := context.WithDeadlineCause(ctx, deadline, cause)
			defer cancel()
			response, err := next(tctx, request)
			if err == nil || !timedOut(ctx, tctx, deadline, cause) {
				return response, err
			}
			switch {
			case errors.Is(err, cause):
				return nil, err
			case errors.Is(err, context.DeadlineExceeded):
				return nil, fmt.Errorf("kit: timeout after %s: %w", d, err)
			default: // keep both: the endpoint's error may say more
				return nil, fmt.Errorf("%w: %w", cause, err)
			}
		}
	}
}

// timedOut reports whether the deadline of tctx, made from parent, ended the
// call: its timer fired, or the deadline has passed and the timer is yet to
// fire while parent lives and has no earlier deadline. The second case is
// common with gRPC: the server, given the same deadline, can reset the call
// before the client's timer runs, and the client then reports
// DeadlineExceeded because the clock has passed the deadline.
func timedOut(parent, tctx context.Context, deadline time.Time, cause error) bool {
	if context.Cause(tctx) == cause {
		return true
	}
	if parent.Err() != nil || time.Now().Before(deadline) {
		return false
	}
	pd, ok := parent.Deadline()
	return !ok || deadline.Before(pd)
}
