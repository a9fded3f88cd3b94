package xds_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/xds"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/proc"
	"github.com/svckit/svckit/internal/testsvc"
)

// startTestServer runs the framework's test server as a child process
// reporting its load with ORCA, and returns its address.
func startTestServer(t *testing.T, ep string, env ...string) string {
	t.Helper()
	p := proc.StartT(t, serverBin, []string{"--etcd", ep, "--ttl", "5s"}, append([]string{"TESTSERVER_ORCA=1"}, env...))
	addr, _, err := p.WaitServing(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestWeightedRoundRobinFollowsReportedLoad(t *testing.T) {
	c := etcdtest.Start(t)
	busy := startTestServer(t, c.Endpoint(0), "TESTSERVER_BURN=2ms")
	idle := startTestServer(t, c.Endpoint(0))
	xs, addr := startXDS(t, c, xds.WithWeightedRoundRobin())
	poll.Until(t, 10*time.Second, "2 instances served", func() bool { return len(xs.Services()["testsvc"]) == 2 })

	rb, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(fmt.Sprintf(
		`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"wrr-test"}}`, addr)))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///testsvc", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	var mu sync.Mutex
	count := map[string]int{}
	failed := 0
	call := func() {
		var p peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := testsvc.Sleep(ctx, cc, 0, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			return
		}
		count[p.Addr.String()]++
	}
	load := func(d time.Duration, max int) {
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for range 4 {
			wg.Go(func() {
				for i := 0; i < max && time.Now().Before(end); i++ {
					call()
				}
			})
		}
		wg.Wait()
	}
	// Past the blackout period, weights are in force.
	load(5*time.Second, 20_000)
	mu.Lock()
	warm := fmt.Sprint(count)
	clear(count)
	mu.Unlock()
	load(4*time.Second, 5_000)
	mu.Lock()
	defer mu.Unlock()
	total := count[busy] + count[idle]
	share := float64(count[busy]) / float64(total)
	t.Logf("weighted_round_robin over ORCA: the server burning 2ms of CPU per call got %.1f %% of %d calls (warm-up %s); failed %d",
		100*share, total, warm, failed)
	if failed != 0 || total < 500 {
		t.Fatalf("failed %d, total %d", failed, total)
	}
	if share > 0.4 {
		t.Fatalf("busy server got %.1f %% of calls; round robin would give 50 %%", 100*share)
	}
}
