package kit

import (
	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/ratelimit"
	"golang.org/x/time/rate"
)

// RateLimit returns a middleware that lets through limit calls a second,
// with bursts of up to burst, and refuses the rest at once with
// ratelimit.ErrLimited. It is go-kit's ratelimit.NewErroringLimiter on a
// rate.Limiter; the token bucket is made once and shared by every endpoint
// the middleware wraps. A burst of 0 refuses every call unless limit is
// rate.Inf.
func RateLimit(limit rate.Limit, burst int) endpoint.Middleware {
	return ratelimit.NewErroringLimiter(rate.NewLimiter(limit, burst))
}
