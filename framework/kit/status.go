package kit

import (
	"context"
	"errors"

	"github.com/go-kit/kit/ratelimit"
	"github.com/sony/gobreaker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCStatus converts an endpoint's error into the status error a gRPC
// method returns; call it at the transport edge only. In order:
//
//   - nil stays nil;
//   - an open or saturated breaker (gobreaker.ErrOpenState,
//     gobreaker.ErrTooManyRequests) becomes Unavailable;
//   - a refused request (ratelimit.ErrLimited) becomes ResourceExhausted;
//   - context.DeadlineExceeded becomes DeadlineExceeded, and
//     context.Canceled Canceled;
//   - an error that is or wraps a status error is returned as is;
//   - any other error becomes Internal with the message "internal error".
//
// Known errors keep their text; an unknown error's text stays on the
// server, where Logging records it.
func GRPCStatus(err error) error {
	var code codes.Code
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		code = codes.Unavailable
	case errors.Is(err, ratelimit.ErrLimited):
		code = codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	default:
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(code, err.Error())
}
