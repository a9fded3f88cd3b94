package kit

import "github.com/go-kit/kit/endpoint"

// Wrap returns e inside mw, the first outermost, as go-kit's endpoint.Chain
// does; with no middleware it returns e (endpoint.Chain needs at least
// one).
func Wrap(e endpoint.Endpoint, mw ...endpoint.Middleware) endpoint.Endpoint {
	if len(mw) == 0 {
		return e
	}
	return endpoint.Chain(mw[0], mw[1:]...)(e)
}
