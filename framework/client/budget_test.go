package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// failing is a set of instances that fail every Sleep with a code while
// told to, counting the attempts that reach them.
type failing struct {
	code     atomic.Int32 // codes.OK: serve
	attempts atomic.Int64
}

func (f *failing) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod != testsvc.SleepMethod {
		return h(ctx, req)
	}
	f.attempts.Add(1)
	if c := codes.Code(f.code.Load()); c != codes.OK {
		return nil, status.Error(c, "told to fail")
	}
	return h(ctx, req)
}

// startFailing serves n instances of testsvc registered in etcd c.
func startFailing(t *testing.T, c *etcdtest.Cluster, n int) *failing {
	t.Helper()
	f := &failing{}
	cli := etcdClient(t, c)
	for range n {
		registerAddr(t, cli, testsvc.Serve(t, grpc.UnaryInterceptor(f.interceptor)))
	}
	return f
}

// etcdClient returns a client of etcd c, closed when t ends.
func etcdClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func registerAddr(t *testing.T, cli *clientv3.Client, addr string) {
	t.Helper()
	r, err := naming.NewRegistrar(cli, naming.Instance{Service: "testsvc", Addr: addr}, naming.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Deregister(context.Background()) })
}

// dialIdempotent dials testsvc, every method idempotent, through a Client
// of etcd c; the conn and the context (of 60 s) end with the test.
func dialIdempotent(t *testing.T, c *etcdtest.Cluster) (context.Context, *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cc, err := newClient(t, c, client.WithIdempotent(testsvc.ServiceName)).Dial(ctx, "testsvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return ctx, cc
}

// Every instance failing, with a retryable code, for a while: the conn's
// retry budget keeps the attempts near one a call (three without it), and
// the first calls after the instances recover succeed.
func TestRetryBudgetHoldsAttemptsNearOneACallInAnOutage(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.ResourceExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			c := etcdtest.Start(t)
			f := startFailing(t, c, 2)
			ctx, cc := dialIdempotent(t, c)
			poll.Until(t, 10*time.Second, "both instances serving", func() bool { return testsvc.Sleep(ctx, cc, 0) == nil })

			f.code.Store(int32(code))
			before := f.attempts.Load()
			const calls = 1000
			for range calls {
				if err := testsvc.Sleep(ctx, cc, 0); status.Code(err) != code {
					t.Fatalf("call during the outage: %v, want %s", err, code)
				}
			}
			perCall := float64(f.attempts.Load()-before) / calls
			t.Logf("%s from every instance: %.3f attempts a call over %d calls", code, perCall, calls)
			if perCall > 1.1 {
				t.Errorf("%.3f attempts a call during the outage, want at most 1.1", perCall)
			}

			f.code.Store(int32(codes.OK))
			for i := range 5 {
				if err := testsvc.Sleep(ctx, cc, 0); err != nil {
					t.Fatalf("call %d after the recovery: %v", i, err)
				}
			}
		})
	}
}

// One instance of two shedding for good: svckit_p2c_ewma still tries it
// once a second (its forced pick), and each of those calls is retried on
// the other instance: none fails.
func TestShedCallIsRetriedElsewhere(t *testing.T) {
	c := etcdtest.Start(t)
	shedding := &failing{}
	shedding.code.Store(int32(codes.ResourceExhausted))
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	registerAddr(t, cli, testsvc.Serve(t, grpc.UnaryInterceptor(shedding.interceptor)))
	healthy := &failing{}
	registerAddr(t, cli, testsvc.Serve(t, grpc.UnaryInterceptor(healthy.interceptor)))
	ctx, cc := dialIdempotent(t, c)
	poll.Until(t, 10*time.Second, "both instances tried", func() bool {
		_ = testsvc.Sleep(ctx, cc, 0)
		return shedding.attempts.Load() > 0 && healthy.attempts.Load() > 0
	})
	tried := shedding.attempts.Load()
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 100_000 && (time.Now().Before(deadline) || shedding.attempts.Load() < tried+2); i++ {
		if err := testsvc.Sleep(ctx, cc, time.Millisecond); err != nil {
			t.Fatalf("call %d: %v, want every call served by the instance that does not shed", i, err)
		}
	}
	t.Logf("attempts: %d to the shedding instance, %d to the other", shedding.attempts.Load(), healthy.attempts.Load())
}
