package serve

import (
	"context"

	"google.golang.org/grpc"
)

// Stop stops srv gracefully within ctx. It closes the listeners, tells
// clients to go away, and waits for the calls in flight to end, as
// grpc.Server.GracefulStop does; if ctx ends first, it closes every
// connection at once (grpc.Server.Stop), which cuts the calls still in
// flight, and returns ctx.Err(). Either way srv has stopped when Stop
// returns, and Stop leaves no goroutine behind. With a ctx already done,
// srv stops at once: the stop for servers whose streams never end.
func Stop(ctx context.Context, srv *grpc.Server) error {
	graceful := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(graceful)
	}()
	select {
	case <-graceful:
		return nil
	case <-ctx.Done():
	}
	srv.Stop()
	<-graceful
	return ctx.Err()
}
