package kit

import (
	"github.com/go-kit/kit/endpoint"
	grpctransport "github.com/go-kit/kit/transport/grpc"
	"google.golang.org/grpc"
)

// ClientEndpoint returns an endpoint that calls /service/method on cc: enc
// turns the endpoint's request into the gRPC request message, and dec turns
// the reply into the endpoint's response. grpcReply is a zero reply message,
// such as new(pb.Reply); each call decodes into a new one of its type. It is
// grpctransport.NewClient(...).Endpoint(); opts are go-kit's client options.
//
// The endpoint returns the call's error as gRPC returns it, a status error.
func ClientEndpoint(
	cc *grpc.ClientConn,
	service, method string,
	enc grpctransport.EncodeRequestFunc,
	dec grpctransport.DecodeResponseFunc,
	grpcReply any,
	opts ...grpctransport.ClientOption,
) endpoint.Endpoint {
	return grpctransport.NewClient(cc, service, method, enc, dec, grpcReply, opts...).Endpoint()
}

// ServerHandler returns the handler of one gRPC method: ServeGRPC decodes
// the gRPC request with dec, calls e, and encodes the response with enc. It
// is grpctransport.NewServer; opts are go-kit's server options.
//
// ServeGRPC returns errors unconverted: the gRPC method that calls it passes
// them through GRPCStatus, as the package example shows.
func ServerHandler(
	e endpoint.Endpoint,
	dec grpctransport.DecodeRequestFunc,
	enc grpctransport.EncodeResponseFunc,
	opts ...grpctransport.ServerOption,
) *grpctransport.Server {
	return grpctransport.NewServer(e, dec, enc, opts...)
}
