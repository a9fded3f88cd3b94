package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/throttle"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// slowLag is what the slow instance of TestHedgingCutsTheSlowInstancesTail
// adds to every Sleep.
const slowLag = 500 * time.Millisecond

// startSlowAndFast serves two instances of testsvc registered in etcd c,
// the first adding slowLag to every Sleep, and counts the attempts each
// gets.
func startSlowAndFast(t *testing.T, c *etcdtest.Cluster) *[2]atomic.Int64 {
	t.Helper()
	cli := etcdClient(t, c)
	var hits [2]atomic.Int64
	for i := range hits {
		registerAddr(t, cli, testsvc.Serve(t, grpc.UnaryInterceptor(
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if info.FullMethod != testsvc.SleepMethod {
					return h(ctx, req)
				}
				hits[i].Add(1)
				if i == 0 {
					select {
					case <-time.After(slowLag):
					case <-ctx.Done(): // the other attempt won
						return nil, status.FromContextError(ctx.Err()).Err()
					}
				}
				return h(ctx, req)
			})))
	}
	return &hits
}

// Round robin over a slow and a fast instance, one caller: every call's
// first attempt goes to the slow instance here (a hedged call picks twice).
// Hedged after 50 ms, the first five calls do not wait for it (the
// budget's burst of ten, less what the warm-up spent); of twenty, some do
// (a call earns a tenth of a hedge). A method not marked idempotent is
// never hedged: every other call waits.
func TestHedgingCutsTheSlowInstancesTail(t *testing.T) {
	c := etcdtest.Start(t)
	hits := startSlowAndFast(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, idempotent := range []bool{true, false} {
		opts := []client.Option{client.WithBalancer(roundrobin.Name), client.WithHedging(50*time.Millisecond, 2)}
		if idempotent {
			opts = append(opts, client.WithIdempotent(testsvc.ServiceName))
		}
		cc, err := newClient(t, c, opts...).Dial(ctx, "testsvc")
		if err != nil {
			t.Fatal(err)
		}
		// Make the next call's first attempt go to the slow instance.
		poll.Until(t, 10*time.Second, "a call to the slow instance", func() bool {
			before := hits[0].Load()
			_ = testsvc.Sleep(ctx, cc, 0)
			return hits[0].Load() > before && hits[1].Load() > 0
		})
		var first5, all int // calls that waited for the slow instance
		for i := range 20 {
			start := time.Now()
			if err := testsvc.Sleep(ctx, cc, 0); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) >= slowLag {
				all++
				if i < 5 {
					first5++
				}
			}
		}
		_ = cc.Close()
		t.Logf("idempotent %v: %d of the first 5 calls and %d of 20 waited for the slow instance", idempotent, first5, all)
		switch {
		case idempotent && (first5 > 0 || all == 0):
			t.Errorf("hedged: %d of 5 and %d of 20 slow; want none of the budget's burst, some after it", first5, all)
		case !idempotent && all < 8:
			t.Errorf("not idempotent: %d of 20 slow; want every other call, unhedged", all)
		}
	}
}

// Instances shedding every call: with adaptive throttling (package
// throttle's interceptors on the conn), most calls
// fail in the client, and few reach the instances.
func TestAdaptiveThrottlingKeepsCallsOffASheddingFleet(t *testing.T) {
	c := etcdtest.Start(t)
	f := startFailing(t, c, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	th, err := throttle.New(throttle.WithWindow(time.Second, 10)) // one per conn: one backend
	if err != nil {
		t.Fatal(err)
	}
	cc, err := newClient(t, c).Dial(ctx, "testsvc",
		client.WithUnaryInterceptor(th.UnaryClientInterceptor()), client.WithStreamInterceptor(th.StreamClientInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	poll.Until(t, 10*time.Second, "instances serving", func() bool { return testsvc.Sleep(ctx, cc, 0) == nil })

	f.code.Store(int32(codes.ResourceExhausted))
	before := f.attempts.Load()
	throttled := 0
	for range 500 {
		err := testsvc.Sleep(ctx, cc, 0)
		switch {
		case errors.Is(err, throttle.ErrThrottled):
			throttled++
		case status.Code(err) != codes.ResourceExhausted:
			t.Fatalf("call: %v; want throttled or shed", err)
		}
	}
	reached := f.attempts.Load() - before
	t.Logf("%d of 500 calls reached the shedding instances, %d throttled", reached, throttled)
	if reached > 100 {
		t.Errorf("%d of 500 calls reached the instances; want at most 100", reached)
	}

	f.code.Store(int32(codes.OK))
	poll.Until(t, 10*time.Second, "calls succeed again", func() bool { return testsvc.Sleep(ctx, cc, 0) == nil })
}
