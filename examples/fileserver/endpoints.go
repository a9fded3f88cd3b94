package fileserver

import (
	"context"

	"github.com/go-kit/kit/endpoint"

	"github.com/svckit/svckit/framework/kit"
)

// Endpoints are FileSrv's unary methods as go-kit endpoints. Upload and
// Download stream, which go-kit endpoints do not model: the transport calls
// the Service for them directly.
type Endpoints struct {
	List, Stat, Delete endpoint.Endpoint
}

// Requests and responses of the endpoints.
type (
	ListRequest  struct{ Dir string }
	ListResponse struct{ Entries []FileInfo }
	StatRequest  struct{ Path string }
	StatResponse struct {
		Info   FileInfo
		SHA256 string
	}
	DeleteRequest  struct{ Path string }
	DeleteResponse struct{}
)

// MakeEndpoints returns the endpoints of s, each wrapped in mw (outermost
// first).
func MakeEndpoints(s Service, mw ...endpoint.Middleware) Endpoints {
	return Endpoints{
		List: kit.Wrap(func(ctx context.Context, req any) (any, error) {
			es, err := s.List(ctx, req.(ListRequest).Dir)
			return ListResponse{Entries: es}, err
		}, mw...),
		Stat: kit.Wrap(func(ctx context.Context, req any) (any, error) {
			info, sum, err := s.Stat(ctx, req.(StatRequest).Path)
			return StatResponse{Info: info, SHA256: sum}, err
		}, mw...),
		Delete: kit.Wrap(func(ctx context.Context, req any) (any, error) {
			return DeleteResponse{}, s.Delete(ctx, req.(DeleteRequest).Path)
		}, mw...),
	}
}
