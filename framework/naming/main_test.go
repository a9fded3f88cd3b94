package naming_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/logsink"
)

func TestMain(m *testing.M) {
	var opts []goleak.Option
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	goleak.VerifyTestMain(m, opts...)
}

func newLogger(t *testing.T) (*slog.Logger, *logsink.Buffer) {
	t.Helper()
	buf := &logsink.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// newClient returns an etcd client of endpoints through naming.NewClient,
// closed at cleanup.
func newClient(t *testing.T, endpoints []string, l *slog.Logger) *clientv3.Client {
	t.Helper()
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: endpoints, Logger: l, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// register registers service at addr and deregisters at cleanup.
func register(t *testing.T, cli *clientv3.Client, service, addr string, opts ...naming.RegistrarOption) *naming.Registrar {
	t.Helper()
	r, err := naming.NewRegistrar(cli, naming.Instance{Service: service, Addr: addr,
		Metadata: naming.Metadata{InstanceID: "i-" + addr, Version: "v1", Weight: 3, Zone: "z1"}}, opts...)
	if err != nil {
		t.Fatalf("new registrar %s: %v", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Register(ctx); err != nil {
		t.Fatalf("register %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = r.Deregister(context.Background()) })
	return r
}

// dial returns a round-robin client of target resolved by b.
func dial(t *testing.T, b resolver.Builder, target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target,
		grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// check makes one health RPC and returns the address of the server that
// answered.
func check(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	var p peer.Peer
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return "", err
	}
	return p.Addr.String(), nil
}

// recorderName is a balancer that connects to nothing and records the
// resolver states it receives, for tests about resolution alone.
const recorderName = "naming_test_recorder"

type recorder struct {
	mu     sync.Mutex
	states []resolver.State
}

var recorders sync.Map // target string → *recorder

func init() { balancer.Register(recorderBuilder{}) }

type recorderBuilder struct{}

func (recorderBuilder) Name() string { return recorderName }

func (recorderBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	r, _ := recorders.LoadOrStore(opts.Target.String(), &recorder{})
	return &recorderBalancer{r: r.(*recorder)}
}

type recorderBalancer struct{ r *recorder }

func (b *recorderBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	b.r.states = append(b.r.states, s.ResolverState)
	return nil
}
func (b *recorderBalancer) ResolverError(error)                                        {}
func (b *recorderBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}
func (b *recorderBalancer) Close()                                                     {}
func (b *recorderBalancer) ExitIdle()                                                  {}

// last returns the last state recorded and how many there were.
func (r *recorder) last() (resolver.State, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return resolver.State{}, 0
	}
	return r.states[len(r.states)-1], len(r.states)
}

// watchTarget opens a connection whose balancer records resolver states, and
// returns the recorder. target must be unique to the test.
func watchTarget(t *testing.T, b resolver.Builder, target string) *recorder {
	t.Helper()
	cc, err := grpc.NewClient(target,
		grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+recorderName+`":{}}]}`))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	cc.Connect()
	t.Cleanup(func() { _ = cc.Close(); recorders.Delete(target) })
	r, _ := recorders.LoadOrStore(target, &recorder{})
	return r.(*recorder)
}

// addrsOf returns the endpoint addresses of s in order.
func addrsOf(s resolver.State) []string {
	out := make([]string, 0, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses[0].Addr)
	}
	return out
}
