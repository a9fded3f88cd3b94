package greeter

import (
	"context"
	"errors"

	grpctransport "github.com/go-kit/kit/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "example.com/greeter/proto/greeter/v1"
	"github.com/svckit/svckit/framework/kit"
)

// StatusOf converts the service's errors to gRPC status at the transport
// edge.
func StatusOf(err error) error {
	if errors.Is(err, ErrEmptyName) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return kit.GRPCStatus(err)
}

type server struct {
	pb.UnimplementedGreeterServiceServer
	hello *grpctransport.Server
}

// Register registers the service on s through its endpoints.
func Register(s grpc.ServiceRegistrar, eps Endpoints) {
	pb.RegisterGreeterServiceServer(s, &server{
		hello: kit.ServerHandler(eps.Hello,
			func(_ context.Context, r any) (any, error) {
				return HelloRequest{Name: r.(*pb.HelloRequest).GetName()}, nil
			},
			func(_ context.Context, r any) (any, error) {
				return &pb.HelloResponse{Message: r.(HelloResponse).Message}, nil
			}),
	})
}

func (s *server) Hello(ctx context.Context, r *pb.HelloRequest) (*pb.HelloResponse, error) {
	_, resp, err := s.hello.ServeGRPC(ctx, r)
	if err != nil {
		return nil, StatusOf(err)
	}
	return resp.(*pb.HelloResponse), nil
}
