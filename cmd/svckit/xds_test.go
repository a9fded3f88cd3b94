package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/logsink"
	"github.com/svckit/svckit/internal/poll"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	// Through the start-up ping and a first failed list, nothing is served
	// and health says so.
	poll.Until(t, 20*time.Second, "a list attempt failed", func() bool { return strings.Contains(logs.String(), "etcd not answered yet") })
	if have := healthOf(t, addr); have != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while etcd is down: have %v, want NOT_SERVING", have)
	}
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
	poll.Until(t, 10*time.Second, "health SERVING once etcd answered", func() bool {
		return healthOf(t, addr) == healthpb.HealthCheckResponse_SERVING
	})
}

// healthOf returns the gRPC health of the server at addr.
func healthOf(t *testing.T, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	return resp.GetStatus()
}

// TestXDSExitsOnRefusalsWaitingCannotFix: a wrong password, a CA that does
// not verify etcd, a user that may not read the prefix, end svckit xds at
// once with one line saying why, instead of a healthy-looking process that
// serves nothing.
func TestXDSExitsOnRefusalsWaitingCannotFix(t *testing.T) {
	c, certs := etcdtest.StartTLS(t)
	// An attempt that gave up on a slow bcrypt (3s dial timeout on a
	// loaded machine) leaves etcd checking the password after the test:
	// let it finish before goleak looks.
	t.Cleanup(func() {
		poll.Until(t, 30*time.Second, "etcd done checking passwords", func() bool {
			buf := make([]byte, 8<<20)
			return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*authStore).CheckPassword")
		})
	})
	other, err := etcdtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const xdsPW, otherPW = "xds-pw", "other-pw"
	enableAuth(t, c.URLs(), certs, xdsPW, otherPW)
	flags := func(ca string) []string {
		return []string{"xds", "--listen", "127.0.0.1:0", "--etcd", c.URLs()[0], "--etcd-ca", ca,
			"--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey}
	}
	for _, tc := range []struct {
		name, user, pw, ca string
		want               string
	}{
		{"wrong password", "xds", "nope", certs.CA, "authentication failed"},
		{"CA that does not verify etcd", "", "", other.CA, "x509"},
		{"CA that does not verify etcd, with a password", "xds", xdsPW, other.CA, "x509"},
		{"user without read permission on the prefix", "other", otherPW, certs.CA, "permission denied"},
	} {
		t.Setenv("SVCKIT_ETCD_USER", tc.user)
		t.Setenv("SVCKIT_ETCD_PASSWORD", tc.pw)
		var out, errb logsink.Buffer
		start := time.Now()
		rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := run(rctx, flags(tc.ca), &out, &errb)
		cancel()
		took := time.Since(start)
		t.Logf("%s: after %s: %v", tc.name, took.Round(time.Millisecond), err)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: want one line with %q, have %v\n%s", tc.name, tc.want, err, errb.String())
		}
		if strings.Contains(out.String(), "serving on") {
			t.Errorf("%s: served: %s", tc.name, out.String())
		}
		if took > 10*time.Second {
			t.Errorf("%s: took %s", tc.name, took)
		}
	}
	// The right user serves.
	t.Setenv("SVCKIT_ETCD_USER", "xds")
	t.Setenv("SVCKIT_ETCD_PASSWORD", xdsPW)
	var out, errb logsink.Buffer
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(rctx, flags(certs.CA), &out, &errb) }()
	poll.Until(t, 20*time.Second, "svckit xds serving with the right user", func() bool { return strings.Contains(out.String(), "serving on") })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("svckit xds with the right user: %v\n%s", err, errb.String())
	}
}

// enableAuth turns on etcd's authentication with three users: root, xds
// (password xdsPW, may read "services/") and other (password otherPW, no
// role).
func enableAuth(t *testing.T, urls []string, certs etcdtest.Certs, xdsPW, otherPW string) {
	t.Helper()
	tlsCli, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: urls, TLS: tlsCli, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const rootPW = "root-pw"
	for i, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", rootPW); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "xds"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "xds", "services/", clientv3.GetPrefixRangeEnd("services/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "xds", xdsPW); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "xds", "xds"); return err },
		func() error { _, err := admin.UserAdd(ctx, "other", otherPW); return err }, // no role
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("auth set-up step %d: %v", i, err)
		}
	}
}

// TestXDSExitsWithoutAUserOfEtcdWithAuth: svckit xds without a user (and
// without a client certificate, whose name etcd would take for one) of an
// etcd with auth enabled exits at once with one line saying so, instead of
// waiting for an etcd that answers.
func TestXDSExitsWithoutAUserOfEtcdWithAuth(t *testing.T) {
	c := etcdtest.Start(t)
	admin := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("auth set-up step %d: %v", i, err)
		}
	}
	t.Setenv("SVCKIT_ETCD_USER", "")
	t.Setenv("SVCKIT_ETCD_PASSWORD", "")
	var out, errb logsink.Buffer
	start := time.Now()
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	err := run(rctx, []string{"xds", "--listen", "127.0.0.1:0", "--etcd", c.Endpoint(0)}, &out, &errb)
	took := time.Since(start)
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "user name is empty") || strings.Contains(err.Error(), "\n") {
		t.Errorf("want one line with %q, have %v\n%s", "user name is empty", err, errb.String())
	}
	if strings.Contains(out.String(), "serving on") {
		t.Errorf("served: %s", out.String())
	}
	if took > 10*time.Second {
		t.Errorf("took %s", took)
	}
}

// TestLastingClassifiesEtcdErrors: lasting tells etcd's refusals that
// waiting does not fix from those it does, by type as etcd's client
// returns them (rpctypes errors) and as Ping does (gRPC status errors).
func TestLastingClassifiesEtcdErrors(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("etcd [127.0.0.1:2379]: read services/: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"user name is empty", wrap(rpctypes.ErrUserEmpty), true},
		{"user name is empty, from Ping", wrap(rpctypes.ErrGRPCUserEmpty), true},
		{"authentication failed", wrap(rpctypes.ErrAuthFailed), true},
		{"permission denied, from Ping", wrap(rpctypes.ErrGRPCPermissionDenied), true},
		{"TLS settings", wrap(fmt.Errorf("x: %w", naming.ErrTLS)), true},
		{"old auth revision", wrap(rpctypes.ErrAuthOldRevision), false},
		{"old auth revision, from Ping", wrap(rpctypes.ErrGRPCAuthOldRevision), false},
		{"invalid auth token", wrap(rpctypes.ErrInvalidAuthToken), false},
		{"no leader", wrap(rpctypes.ErrGRPCNoLeader), false},
		{"connection reset", wrap(errors.New("no answer: read: connection reset by peer")), false},
		{"deadline", wrap(context.DeadlineExceeded), false},
	} {
		if have := lasting(tc.err); have != tc.want {
			t.Errorf("%s: lasting(%v): have %t, want %t", tc.name, tc.err, have, tc.want)
		}
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
