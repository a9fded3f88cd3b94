package kit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/sony/gobreaker"
)

// BreakerOption configures CircuitBreaker.
type BreakerOption func(*breakerOptions)

type breakerOptions struct {
	failures    uint32
	openTimeout time.Duration
	isSuccess   func(error) bool
	logger      *slog.Logger
}

// WithFailures sets how many consecutive failures open the breaker; default
// 5. Zero means 1.
func WithFailures(n uint32) BreakerOption { return func(o *breakerOptions) { o.failures = n } }

// WithOpenTimeout sets how long the breaker stays open before it lets trial
// calls through; default 60s, gobreaker's. A non-positive d means the
// default.
func WithOpenTimeout(d time.Duration) BreakerOption {
	return func(o *breakerOptions) { o.openTimeout = d }
}

// WithIsSuccessful sets which errors of the endpoint count as successes:
// for a client endpoint, errors the caller caused, such as
// codes.InvalidArgument, say nothing about the server's health. Default:
// only a nil error is a success.
func WithIsSuccessful(f func(err error) bool) BreakerOption {
	return func(o *breakerOptions) { o.isSuccess = f }
}

// WithBreakerLogger logs each state change with the keys breaker, from and
// to: at warn when the breaker opens, else at info. Default: no logging.
func WithBreakerLogger(l *slog.Logger) BreakerOption {
	return func(o *breakerOptions) { o.logger = l }
}

// CircuitBreaker returns a middleware that fails calls fast while the
// endpoint keeps failing: after the set number of consecutive failures the
// breaker opens, and calls fail at once, without reaching the endpoint,
// with an error that wraps gobreaker.ErrOpenState; after the open timeout
// it lets one trial call through, and closes on its success. Calls made
// while the trial runs fail with gobreaker.ErrTooManyRequests. The
// endpoint's own errors pass through unchanged.
//
// It is a sony/gobreaker breaker used as go-kit's circuitbreaker.Gobreaker
// uses it (copied: that package also pulls in hystrix-go and handy). The
// breaker, named name, is made once and shared by every endpoint the
// middleware wraps.
func CircuitBreaker(name string, opts ...BreakerOption) endpoint.Middleware {
	o := breakerOptions{failures: 5, openTimeout: 60 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	st := gobreaker.Settings{
		Name:         name,
		MaxRequests:  1, // one trial call at a time while half-open, gobreaker's default
		Timeout:      o.openTimeout,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.failures },
		IsSuccessful: o.isSuccess,
	}
	if l := o.logger; l != nil {
		st.OnStateChange = func(name string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			l.Log(context.Background(), level, "circuit breaker state change",
				"breaker", name, "from", from.String(), "to", to.String())
		}
	}
	cb := gobreaker.NewCircuitBreaker(st)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			response, err := cb.Execute(func() (any, error) { return next(ctx, request) })
			if err == gobreaker.ErrOpenState || err == gobreaker.ErrTooManyRequests {
				return nil, fmt.Errorf("kit: breaker %s: %w", name, err)
			}
			return response, err
		}
	}
}
