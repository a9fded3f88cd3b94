package kit

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-kit/kit/endpoint"
)

// Logging returns a middleware that logs each call of the endpoint called
// name: "call" at debug when it succeeds, "call failed" at warn with its
// error when it fails, both with the keys endpoint and duration, and the
// call's context. A nil logger logs nothing.
//
// Put Logging outside the breaker and the limiter to see their refusals.
// On a server it records the text of the errors that GRPCStatus hides from
// the caller.
func Logging(logger *slog.Logger, name string) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		if logger == nil {
			return next
		}
		return func(ctx context.Context, request any) (any, error) {
			start := time.Now()
			response, err := next(ctx, request)
			if err != nil {
				logger.LogAttrs(ctx, slog.LevelWarn, "call failed",
					slog.String("endpoint", name), slog.Duration("duration", time.Since(start)), slog.Any("err", err))
			} else {
				logger.LogAttrs(ctx, slog.LevelDebug, "call",
					slog.String("endpoint", name), slog.Duration("duration", time.Since(start)))
			}
			return response, err
		}
	}
}
