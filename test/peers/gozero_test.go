package peers

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/zeromicro/go-zero/core/logx"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"

	// zrpc registers go-zero's p2c balancer, named "p2c_ewma", in grpc-go's
	// global registry from an init, as any program using go-zero does.
	_ "github.com/zeromicro/go-zero/zrpc"
)

// goZeroP2C is the name go-zero registers its balancer under
// (zrpc/internal/balancer/p2c.Name, which is internal to go-zero).
const goZeroP2C = "p2c_ewma"

// go-zero starts goroutines from its inits (logging, process statistics),
// which this package does not own: IgnoreCurrent, taken before the tests,
// leaves those out.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

// pkgOf is the package that defines the builder's type.
func pkgOf(b balancer.Builder) string {
	t := reflect.TypeOf(b)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath()
}

// lockedBuffer collects go-zero's log lines, written from gRPC's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestGoZeroAndSvckitBalancersSideBySide links go-zero's zrpc beside
// svckit's lb in one program: each p2c policy is registered under its own
// name, neither replaces the other whatever the order of the inits, and
// real calls go through each, to servers of their own.
//
// That go-zero's picker, not svckit's, ran the first connection's calls is
// seen in go-zero's log: its picker logs a "p2c - conn: ADDR, ..." line per
// connection it balances over, on the first finished call and then once a
// minute (zrpc/internal/balancer/p2c logStats).
func TestGoZeroAndSvckitBalancersSideBySide(t *testing.T) {
	var zlog lockedBuffer
	logx.SetWriter(logx.NewWriter(&zlog))
	t.Cleanup(func() { logx.Reset() })

	lbPkg := reflect.TypeOf(lb.Config{}).PkgPath()
	zero, ours := balancer.Get(goZeroP2C), balancer.Get(lb.P2CEWMA)
	if zero == nil || ours == nil {
		t.Fatalf("registry: %s → %v, %s → %v; want both registered", goZeroP2C, zero, lb.P2CEWMA, ours)
	}
	if have := pkgOf(ours); have != lbPkg {
		t.Errorf("%s: builder %T from package %s, want svckit's (%s)", lb.P2CEWMA, ours, have, lbPkg)
	}
	if have := pkgOf(zero); have == lbPkg {
		t.Errorf("%s: builder %T is svckit's, want go-zero's", goZeroP2C, zero)
	}
	for _, name := range []string{lb.Random, lb.ConsistentHash, lb.WeightedRoundRobin} {
		if b := balancer.Get(name); b == nil || pkgOf(b) != lbPkg {
			t.Errorf("%s: want svckit's builder, have %v", name, b)
		}
	}
	for _, old := range []string{"random", "consistent_hash"} {
		if b := balancer.Get(old); b != nil && pkgOf(b) == lbPkg {
			t.Errorf("%s: svckit registers its old name", old)
		}
	}

	servers := map[string][]string{}
	for _, policy := range []string{goZeroP2C, lb.P2CEWMA} {
		addrs := []string{testsvc.Serve(t), testsvc.Serve(t)}
		servers[policy] = addrs
		t.Run(policy, func(t *testing.T) {
			cc := dial(t, policy, addrs)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			seen := map[string]int{}
			poll.Until(t, 20*time.Second, policy+": a call answered by each server", func() bool {
				var p peer.Peer
				if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
					t.Fatalf("%s: call: %v", policy, err)
				}
				seen[p.Addr.String()]++
				return len(seen) == len(addrs)
			})
			t.Logf("%s: calls per server %v", policy, seen)
		})
	}
	for policy, addrs := range servers {
		for _, a := range addrs {
			want := policy == goZeroP2C
			if have := strings.Contains(zlog.String(), "conn: "+a+","); have != want {
				t.Errorf("%s: go-zero's picker logged server %s: want %v, have %v; go-zero's log:\n%s", policy, a, want, have, zlog.String())
			}
		}
	}
}

// dial connects to addrs through a manual resolver, with policy as the
// service config's only load-balancing policy.
func dial(t *testing.T, policy string, addrs []string) *grpc.ClientConn {
	t.Helper()
	// go-zero's balancer (built on grpc's balancer/base) reads only
	// Addresses, as go-zero's resolvers set them; grpc derives the
	// Endpoints that svckit's policies read from them.
	var state resolver.State
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r := manual.NewBuilderWithScheme("peers")
	r.InitialState(state)
	cc, err := grpc.NewClient(r.Scheme()+":///svc",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, policy)))
	if err != nil {
		t.Fatalf("%s: %v", policy, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
