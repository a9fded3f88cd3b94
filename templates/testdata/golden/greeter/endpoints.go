package greeter

import (
	"context"

	"github.com/go-kit/kit/endpoint"

	"github.com/svckit/svckit/framework/kit"
)

// Endpoints are the service's methods as go-kit endpoints.
type Endpoints struct {
	Hello endpoint.Endpoint
}

// HelloRequest and HelloResponse are the Hello endpoint's messages.
type (
	HelloRequest  struct{ Name string }
	HelloResponse struct{ Message string }
)

// MakeEndpoints returns the endpoints of s, each wrapped in mw (outermost
// first).
func MakeEndpoints(s Service, mw ...endpoint.Middleware) Endpoints {
	return Endpoints{
		Hello: kit.Wrap(func(ctx context.Context, req any) (any, error) {
			msg, err := s.Hello(ctx, req.(HelloRequest).Name)
			return HelloResponse{Message: msg}, err
		}, mw...),
	}
}
