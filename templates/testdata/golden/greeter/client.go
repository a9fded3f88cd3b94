package greeter

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"google.golang.org/grpc"

	pb "example.com/greeter/proto/greeter/v1"
	"github.com/svckit/svckit/framework/kit"
)

// Client calls the service over a connection from client.Client.Dial.
type Client struct {
	hello endpoint.Endpoint
}

// NewClient returns a client of cc.
func NewClient(cc *grpc.ClientConn) *Client {
	return &Client{
		hello: kit.ClientEndpoint(cc, pb.GreeterService_ServiceDesc.ServiceName, "Hello",
			func(_ context.Context, r any) (any, error) { return &pb.HelloRequest{Name: r.(HelloRequest).Name}, nil },
			func(_ context.Context, r any) (any, error) {
				return HelloResponse{Message: r.(*pb.HelloResponse).GetMessage()}, nil
			}, new(pb.HelloResponse)),
	}
}

// Hello asks for a greeting for name.
func (c *Client) Hello(ctx context.Context, name string) (string, error) {
	r, err := c.hello(ctx, HelloRequest{Name: name})
	if err != nil {
		return "", err
	}
	return r.(HelloResponse).Message, nil
}
