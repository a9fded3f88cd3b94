package throttle_test

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/svckit/svckit/framework/throttle"
)

func Example() {
	th, err := throttle.New() // K = 2, slack 10, over 3 s
	if err != nil {
		panic(err)
	}
	cc, err := grpc.NewClient("127.0.0.1:1", // one backend's conn
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(th.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(th.StreamClientInterceptor()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	// … calls on cc; while the backend refuses most of them, most fail
	// at once with throttle.ErrThrottled …
	fmt.Printf("%+v\n", th.Stats())
	// Output:
	// {Requests:0 Accepts:0 Rejected:0 Probability:0}
}
