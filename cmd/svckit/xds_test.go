package main

import (
	"context"
	"regexp"
	"slices"
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
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	var out, errb logsink.Buffer
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(rctx, []string{"xds", "--listen", "127.0.0.1:0", "--etcd", c.Endpoint(0)}, &out, &errb)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("svckit xds: %v\n%s", err, errb.String())
		}
	}()
	re := regexp.MustCompile(`serving on (\S+)`)
	poll.Until(t, 10*time.Second, "svckit xds serving", func() bool { return re.MatchString(out.String()) })
	addr := re.FindStringSubmatch(out.String())[1]

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Ask for every cluster; ACK each answer until one has both services.
	req := &discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "test"}, TypeUrl: resourcev3.ClusterType}
	var names []string
	for !slices.Equal(names, []string{"alpha", "beta"}) {
		if err := ads.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := ads.Recv()
		if err != nil {
			t.Fatalf("clusters so far %v: %v", names, err)
		}
		names = names[:0]
		for _, r := range resp.Resources {
			var cl clusterv3.Cluster
			if err := r.UnmarshalTo(&cl); err != nil {
				t.Fatal(err)
			}
			names = append(names, cl.GetName())
		}
		slices.Sort(names)
		req.VersionInfo, req.ResponseNonce = resp.VersionInfo, resp.Nonce
	}
	_ = ads.CloseSend()
}
