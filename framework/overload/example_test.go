package overload_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/svckit/svckit/framework/overload"
)

func Example() {
	l, err := overload.New(overload.WithPriority(func(method string) overload.Priority {
		if method == "/reports.v1.Reports/Export" {
			return overload.Sheddable // batch work goes first
		}
		return overload.Normal
	}))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }() // samples the CPU
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(l.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(l.StreamServerInterceptor()))
	defer srv.Stop()
	// … register services, serve …
	fmt.Println("limit before the first calls:", l.Stats().Limit)
	stop()
	fmt.Println(<-done)
	// Output:
	// limit before the first calls: 0
	// <nil>
}
