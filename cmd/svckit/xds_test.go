package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/logsink"
	"github.com/svckit/svckit/internal/poll"
)

func TestXDSServesRegisteredServices(t *testing.T) {
	c := etcdtest.Start(t)
	putRecords(t, c)
	addr, _ := startXDSCommand(t, c.Endpoint(0))
	if have, want := clusters(t, addr), []string{"alpha", "beta"}; !slices.Equal(have, want) {
		t.Fatalf("clusters: have %v, want %v", have, want)
	}
}

func TestXDSStartsWhileEtcdIsDownAndServesNothingUntilItAnswers(t *testing.T) {
	c := etcdtest.Start(t)
	putRecords(t, c)
	c.Stop(0)
	addr, logs := startXDSCommand(t, c.Endpoint(0))
	type result struct {
		names []string
		at    time.Time
	}
	got := make(chan result, 1)
	go func() { names := clusters(t, addr); got <- result{names, time.Now()} }()
	// Through the start-up ping and a first failed list, nothing is served.
	poll.Until(t, 20*time.Second, "a list attempt failed", func() bool { return strings.Contains(logs.String(), "etcd not answered yet") })
	restarted := time.Now()
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.at.Before(restarted) {
		t.Fatalf("served %v before etcd answered", r.names)
	}
	if want := []string{"alpha", "beta"}; !slices.Equal(r.names, want) {
		t.Fatalf("clusters: have %v, want %v", r.names, want)
	}
}

// putRecords registers alpha and beta, one instance each, in c.
func putRecords(t *testing.T, c *etcdtest.Cluster) {
	t.Helper()
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, in := range []naming.Instance{
		{Service: "alpha", Addr: "127.0.0.1:1001"},
		{Service: "beta", Addr: "127.0.0.1:1002"},
	} {
		v, err := naming.Record{Addr: in.Addr}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, naming.Key(naming.DefaultPrefix, in.Service, in.Addr), string(v)); err != nil {
			t.Fatal(err)
		}
	}
}

// startXDSCommand runs svckit xds against etcd at ep until the test ends
// and returns the address it serves on and its log.
func startXDSCommand(t *testing.T, ep string) (string, *logsink.Buffer) {
	t.Helper()
	var out, errb logsink.Buffer
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"xds", "--listen", "127.0.0.1:0", "--etcd", ep}, &out, &errb)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("svckit xds: %v\n%s", err, errb.String())
		}
	})
	re := regexp.MustCompile(`serving on (\S+)`)
	poll.Until(t, 20*time.Second, "svckit xds serving", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("svckit xds exited: %v\n%s", err, errb.String())
		default:
		}
		return re.MatchString(out.String())
	})
	return re.FindStringSubmatch(out.String())[1], &errb
}

// clusters asks the xDS server at addr for every cluster over ADS, ACKing
// each answer, until one holds two, and returns their names sorted.
func clusters(t *testing.T, addr string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Error(err)
		return nil
	}
	defer cc.Close()
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer func() { _ = ads.CloseSend() }()
	req := &discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "test"}, TypeUrl: resourcev3.ClusterType}
	var names []string
	for len(names) < 2 {
		if err := ads.Send(req); err != nil {
			t.Error(err)
			return nil
		}
		resp, err := ads.Recv()
		if err != nil {
			t.Errorf("clusters so far %v: %v", names, err)
			return nil
		}
		names = names[:0]
		for _, r := range resp.Resources {
			var cl clusterv3.Cluster
			if err := r.UnmarshalTo(&cl); err != nil {
				t.Error(err)
				return nil
			}
			names = append(names, cl.GetName())
		}
		slices.Sort(names)
		req.VersionInfo, req.ResponseNonce = resp.VersionInfo, resp.Nonce
	}
	return names
}
