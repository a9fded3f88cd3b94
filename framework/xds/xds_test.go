package xds_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/xds"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
)

var quiet = slog.New(slog.DiscardHandler)

// instance is a FileSrv instance on framework.App, in-process.
type instance struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startFileServer starts a FileSrv instance over root, registered in etcd
// at ep with metadata md, that keeps serving for propagation after it
// deregisters.
func startFileServer(t *testing.T, ep, root string, propagation time.Duration, md naming.Metadata) *instance {
	t.Helper()
	cfg := framework.DefaultConfig()
	cfg.Etcd = []string{ep}
	cfg.TTL = 5 * time.Second
	svc, err := fileserver.NewDirService(root, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	app, err := fileserver.NewApp(svc, framework.WithConfig(cfg), framework.WithoutSignals(),
		framework.WithLogger(quiet), framework.WithPropagationDelay(propagation), framework.WithMetadata(md))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- app.Run(ctx) }()
	select {
	case <-app.Started():
	case err := <-in.done:
		t.Fatalf("fileserver: %v", err)
	}
	in.addr = app.Addr()
	t.Cleanup(func() {
		cancel()
		<-in.done
		svc.Close()
	})
	return in
}

// startXDS starts an xDS server fed by etcd at c on 127.0.0.1 and returns
// it with its address.
func startXDS(t *testing.T, c *etcdtest.Cluster, opts ...xds.Option) (*xds.Server, string) {
	t.Helper()
	b := naming.NewBuilder(c.Client(t), naming.WithResolverLogger(quiet))
	xs, err := xds.New(b, append([]xds.Option{xds.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- xs.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("xds serve: %v", err)
		}
	})
	return xs, lis.Addr().String()
}

// bootstrap writes a gRPC xDS bootstrap file naming the server at addr.
func bootstrap(t *testing.T, addr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bootstrap.json")
	js := fmt.Sprintf(`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"xdsclient-test"}}`, addr)
	if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var callRE = regexp.MustCompile(`call peer=(\S+) at=(\d+)`)

// calls parses the xdsclient's call lines.
func calls(out string) (peers []string, at []time.Time) {
	for _, m := range callRE.FindAllStringSubmatch(out, -1) {
		ns, _ := strconv.ParseInt(m[2], 10, 64)
		peers, at = append(peers, m[1]), append(at, time.Unix(0, ns))
	}
	return peers, at
}

func TestPlainGRPCClientReachesFileSrvThroughXDS(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	root := t.TempDir()
	var ins []*instance
	for i := range 3 {
		ins = append(ins, startFileServer(t, c.Endpoint(0), root, 3*time.Second, naming.Metadata{Zone: fmt.Sprintf("zone-%d", i%2)}))
	}
	xs, addr := startXDS(t, c)
	poll.Until(t, 10*time.Second, "3 instances served", func() bool { return len(xs.Services()["fileserver"]) == 3 })

	p := proc.StartT(t, clientBin, []string{"-loop", "30s"}, []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap(t, addr)})
	if _, err := p.WaitFor(regexp.MustCompile(`downloaded ok bytes=4194304`), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Calls spread over the three instances.
	poll.Until(t, 20*time.Second, "calls on all 3 instances", func() bool {
		peers, _ := calls(p.Output())
		seen := map[string]int{}
		for _, a := range peers {
			seen[a]++
		}
		return len(seen) == 3 && len(peers) >= 300
	})
	peers, _ := calls(p.Output())
	share := map[string]int{}
	for _, a := range peers {
		share[a]++
	}
	for _, in := range ins {
		if f := float64(share[in.addr]) / float64(len(peers)); f < 0.2 {
			t.Fatalf("instance %s got %.0f %% of %d calls: %v", in.addr, 100*f, len(peers), share)
		}
	}

	// Deregister one: it keeps serving for 3s, but the client must leave
	// it within 1s.
	victim := ins[0]
	start := time.Now()
	victim.cancel()
	poll.Until(t, 5*time.Second, "record deleted", func() bool {
		return etcdtest.Count(t, cli, naming.Key(naming.DefaultPrefix, "fileserver", victim.addr)) == 0
	})
	deleted := time.Now()
	poll.Until(t, 10*time.Second, "calls 1.5s past the deletion", func() bool {
		_, at := calls(p.Output())
		return len(at) > 0 && at[len(at)-1].After(deleted.Add(1500*time.Millisecond))
	})
	peers, at := calls(p.Output())
	var last time.Time
	after := 0
	for i, a := range peers {
		if a == victim.addr {
			last = at[i]
		}
		if at[i].After(deleted) {
			after++
		}
	}
	off := last.Sub(deleted)
	t.Logf("xds: %d calls before the deregistration, spread %v; last call to the deregistered instance %s after its record was deleted (%s after the stop began); %d calls since",
		len(peers)-after, share, off.Round(time.Millisecond), last.Sub(start).Round(time.Millisecond), after)
	if off > time.Second {
		t.Fatalf("client used the deregistered instance %s after its record was deleted", off)
	}
	if o := p.Output(); regexp.MustCompile(`call err=`).MatchString(o) {
		t.Fatalf("failed calls:\n%s", tail(o, 2000))
	}
}

func TestEndpointChangesReSendEndpointsOnly(t *testing.T) {
	c := etcdtest.Start(t)
	root := t.TempDir()
	startFileServer(t, c.Endpoint(0), root, 0, naming.Metadata{Zone: "a", Weight: 3})
	xs, _ := startXDS(t, c)
	poll.Until(t, 10*time.Second, "1 instance", func() bool { return len(xs.Services()["fileserver"]) == 1 })
	cds, eds, lds := xs.Versions()
	second := startFileServer(t, c.Endpoint(0), root, 0, naming.Metadata{Zone: "b"})
	poll.Until(t, 10*time.Second, "2 instances", func() bool { return len(xs.Services()["fileserver"]) == 2 })
	cds2, eds2, lds2 := xs.Versions()
	if cds2 != cds || lds2 != lds || eds2 == eds {
		t.Fatalf("versions: cds %s→%s, eds %s→%s, lds %s→%s: want only eds changed", cds, cds2, eds, eds2, lds, lds2)
	}
	got := map[string]xds.Instance{}
	for _, in := range xs.Services()["fileserver"] {
		got[in.Addr] = in
	}
	if in := got[second.addr]; in.Zone != "b" || in.Weight != 1 {
		t.Fatalf("second instance served as %+v", in)
	}
	second.cancel()
	<-second.done
	second.done <- nil // for its cleanup
	poll.Until(t, 10*time.Second, "back to 1 instance", func() bool { return len(xs.Services()["fileserver"]) == 1 })
	cds3, eds3, lds3 := xs.Versions()
	if cds3 != cds || lds3 != lds || eds3 != eds {
		t.Fatalf("after the removal the versions are not the first ones: %s %s %s vs %s %s %s", cds3, eds3, lds3, cds, eds, lds)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func TestRecordsOfEtcdsEndpointsManagerAreServed(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// endpoints.Manager lets the key end in any name; the record holds
	// the address. A key with no valid service is skipped.
	for k, addr := range map[string]string{
		"services/interop/instance-2":  "127.0.0.1:7002",
		"services/interop/127.0.0.1:1": "127.0.0.1:7001",
		"services/Bad Name/x":          "127.0.0.1:7003",
	} {
		v, err := naming.Record{Addr: addr}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, k, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	xs, _ := startXDS(t, c)
	poll.Until(t, 10*time.Second, "2 interop instances", func() bool { return len(xs.Services()["interop"]) == 2 })
	if n := len(xs.Services()); n != 1 {
		t.Fatalf("services: %v", xs.Services())
	}
}

func TestHealthIsNotServingUntilTheFirstSnapshot(t *testing.T) {
	c := etcdtest.Start(t)
	put(t, c.Client(t), "alpha", "127.0.0.1:1001")
	c.Stop(0)
	xs, addr := startXDS(t, c)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("health check: %v", err)
		}
		return resp.GetStatus()
	}
	if have := check(); have != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while etcd has not answered: have %v, want NOT_SERVING", have)
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 20*time.Second, "health SERVING once etcd answered", func() bool {
		return check() == healthpb.HealthCheckResponse_SERVING
	})
	select {
	case <-xs.Ready():
	default:
		t.Fatal("SERVING before Ready")
	}
	if n := len(xs.Services()); n != 1 {
		t.Fatalf("services once SERVING: %v", xs.Services())
	}
}
