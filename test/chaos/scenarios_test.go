package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

var quiet = slog.New(slog.DiscardHandler)

// etcdAt makes a client reach etcd at endpoints, its own logs discarded.
func etcdAt(endpoints ...string) naming.ClientConfig {
	return naming.ClientConfig{Endpoints: endpoints, Logger: quiet}
}

// startServers starts n chaos servers registered at endpoints.
func startServers(t *testing.T, n int, endpoints string, env ...string) []*server {
	t.Helper()
	var out []*server
	for range n {
		out = append(out, startServer(t, endpoints, env...))
	}
	return out
}

// fleet is one etcd, n chaos servers registered in it, and a svckit_p2c_ewma
// client that resolves every one of them.
type fleet struct {
	c    *etcdtest.Cluster
	cli  *clientv3.Client
	ep   string
	srvs []*server
	cl   *conn
}

func startFleet(t *testing.T, n int, dialOpts ...client.Option) *fleet {
	t.Helper()
	f := &fleet{c: etcdtest.Start(t)}
	f.cli, f.ep = f.c.Client(t), f.c.Endpoint(0)
	f.srvs = startServers(t, n, f.ep)
	f.cl = dial(t, lb.P2CEWMA, etcdAt(f.ep), dialOpts...)
	f.cl.waitEndpoints(t, n, 10*time.Second)
	return f
}

// noFailures fails t if l saw a failed call.
func noFailures(t *testing.T, l *load) {
	t.Helper()
	if f := l.failures.Load(); f != 0 {
		t.Fatalf("%d of %d calls failed; first errors: %q", f, l.calls.Load(), l.firstErrors())
	}
}

func TestRollingRestart(t *testing.T) {
	leakCheck(t)
	f := startFleet(t, 3)
	cli, ep, srvs, cl := f.cli, f.ep, f.srvs, f.cl

	l := sleepLoad(cl, 8, 5_000, 0)
	start := time.Now()
	l.waitCalls(t, 1_000, 30*time.Second)
	for i, old := range srvs {
		old.term(t)
		nu := startServer(t, ep)
		poll.Until(t, 10*time.Second, fmt.Sprintf("instance %d replaced", i), func() bool {
			r := records(t, cli)
			return r[nu.addr] && len(r) == 3
		})
		l.waitCalls(t, 1_500, 30*time.Second)
	}
	poll.Until(t, 60*time.Second, "10,000 calls", func() bool { return l.calls.Load() >= 10_000 })
	l.stop()
	elapsed := time.Since(start)
	cl.converge(t, cli, 2*time.Second)

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d (%.0f RPC/s over %s)", l.failures.Load(), l.calls.Load(),
		float64(l.calls.Load())/elapsed.Seconds(), elapsed.Round(100*time.Millisecond)), "0 of ≥ 10,000")
	noFailures(t, l)
}

func TestKill9(t *testing.T) {
	leakCheck(t)
	f := startFleet(t, 3)
	cli, srvs, cl := f.cli, f.srvs, f.cl

	l := sleepLoad(cl, 8, 5_000, 0)
	l.waitCalls(t, 1_000, 30*time.Second)
	victim := srvs[0]
	if cl.attempts.lastAt(victim.addr).IsZero() {
		t.Fatalf("no traffic reached %s before the kill", victim.addr)
	}
	killed := time.Now()
	victim.Kill()
	l.waitCalls(t, 3_000, 30*time.Second)
	poll.Until(t, ttl+5*time.Second, "the killed instance's record gone", func() bool { return !records(t, cli)[victim.addr] })
	gone := time.Since(killed)
	l.stop()
	off := cl.attempts.lastAt(victim.addr).Sub(killed)
	cl.converge(t, cli, 2*time.Second)

	figure(t, "failed idempotent RPCs", fmt.Sprintf("%d of %d", l.failures.Load(), l.calls.Load()), "0")
	figure(t, "last attempt sent to the killed instance", fmt.Sprintf("%s after the kill", max(off, 0).Round(time.Millisecond)), "≤ 100ms")
	figure(t, "its record gone", fmt.Sprintf("%s after the kill", gone.Round(10*time.Millisecond)), "≤ TTL + 2s = 4s")
	noFailures(t, l)
	if off > 100*time.Millisecond {
		t.Fatalf("traffic to the killed instance went on %s after the kill", off)
	}
	if gone > ttl+2*time.Second {
		t.Fatalf("record of the killed instance gone %s after the kill", gone)
	}
}

func TestEtcdLeaderLoss(t *testing.T) {
	leakCheck(t)
	c := etcdtest.StartCluster(t, 3)
	cli := c.Client(t)
	eps := c.Endpoints()
	srvs := startServers(t, 3, strings.Join(eps, ","))
	cl := dial(t, lb.P2CEWMA, etcdAt(eps...))
	cl.waitEndpoints(t, 3, 10*time.Second)
	cl.rec.reset()

	l := sleepLoad(cl, 8, 10_000, 0)
	l.waitCalls(t, 500, 30*time.Second)
	old := c.Leader()
	stopped := time.Now()
	var kill sync.WaitGroup
	kill.Go(func() { c.Kill(old) })
	poll.Until(t, 15*time.Second, "a new leader", func() bool { l := c.Leader(); return l >= 0 && l != old })
	elected := time.Since(stopped)
	kill.Wait()
	// Hold the load past two TTLs under the new leader: every lease must
	// have been kept alive through the election.
	poll.Until(t, 20*time.Second, "two TTLs under the new leader", func() bool { return time.Since(stopped) > 2*ttl })
	l.waitCalls(t, 500, 30*time.Second)
	l.stop()
	updates, removals, minSize := cl.rec.counts()
	var losses float64
	for _, s := range srvs {
		v, _ := s.metric("svckit_registration_losses_total")
		losses += v
	}

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d", l.failures.Load(), l.calls.Load()), "0")
	figure(t, "endpoint removals seen", fmt.Sprintf("%d in %d resolver updates; new leader %s after the kill; leases lost %v",
		removals, updates, elected.Round(time.Millisecond), losses), "0")
	noFailures(t, l)
	if removals != 0 || (updates > 0 && minSize < 3) {
		t.Fatalf("clients saw %d endpoint removals (smallest set %d)", removals, minSize)
	}
	if len(records(t, cli)) != 3 {
		t.Fatalf("records after the election: %v", keys(records(t, cli)))
	}
	cl.converge(t, cli, 2*time.Second)
}

func TestEtcdDown(t *testing.T) {
	leakCheck(t)
	f := startFleet(t, 3)
	c, cli, srvs, cl := f.c, f.cli, f.srvs, f.cl

	l := sleepLoad(cl, 8, 20_000, 0)
	l.waitCalls(t, 500, 30*time.Second)
	down := time.Now()
	c.Stop(0)
	dead, live := srvs[2], srvs[:2]
	l.waitCalls(t, 200, 30*time.Second)
	dead.Kill()
	// etcd stays down for two TTLs, until the live servers know their
	// leases are lost.
	poll.Until(t, 20*time.Second, "two TTLs down, leases lost", func() bool {
		if time.Since(down) < 2*ttl {
			return false
		}
		for _, s := range live {
			if v, ok := s.metric("svckit_registered"); !ok || v != 0 {
				return false
			}
		}
		return true
	})
	outage := time.Since(down)
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	// Watch both at once: each live server registered again, the dead
	// one's record gone.
	var again, goneAfter time.Duration
	back := map[*server]bool{}
	poll.Until(t, 20*time.Second, "live servers registered again, the dead one's record gone", func() bool {
		recs := records(t, cli)
		for _, s := range live {
			if v, ok := s.metric("svckit_registered"); !back[s] && ok && v == 1 && recs[s.addr] {
				back[s] = true
				again = max(again, time.Since(up))
			}
		}
		if goneAfter == 0 && !recs[dead.addr] {
			goneAfter = time.Since(up)
		}
		return len(back) == len(live) && goneAfter > 0
	})
	l.waitCalls(t, 500, 30*time.Second)
	l.stop()
	cl.converge(t, cli, 2*time.Second)

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d, etcd down %s, one server killed meanwhile", l.failures.Load(), l.calls.Load(),
		outage.Round(100*time.Millisecond)), "0")
	figure(t, "live servers registered again", fmt.Sprintf("%s after etcd returned (slowest of 2)", again.Round(time.Millisecond)), "≤ 2s")
	figure(t, "dead server's record gone", fmt.Sprintf("%s after etcd returned", goneAfter.Round(10*time.Millisecond)), "≤ TTL + 2s = 4s")
	noFailures(t, l)
	if again > 2*time.Second {
		t.Fatalf("live servers registered again %s after etcd returned", again)
	}
	if goneAfter > ttl+2*time.Second {
		t.Fatalf("dead server's record gone %s after etcd returned", goneAfter)
	}
}

// newEtcdProxy starts etcd's fault-injecting proxy in front of target.
func newEtcdProxy(t *testing.T, target string) proxy.Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	from := lis.Addr().String()
	_ = lis.Close()
	px := proxy.NewServer(proxy.ServerConfig{
		Logger: zap.NewNop(),
		From:   url.URL{Scheme: "tcp", Host: from},
		To:     url.URL{Scheme: "tcp", Host: target},
	})
	select {
	case <-px.Ready():
	case err := <-px.Error():
		t.Fatalf("etcd proxy: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-px.Error():
			case <-px.Done():
				return
			}
		}
	})
	t.Cleanup(func() { _ = px.Close(); wg.Wait() })
	return px
}

func TestServerCutOffFromEtcd(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ep := c.Endpoint(0)
	px := newEtcdProxy(t, ep)
	startServers(t, 2, ep)
	victim := startServer(t, strings.TrimPrefix(px.From(), "tcp://"))
	cl := dial(t, lb.P2CEWMA, etcdAt(ep))
	cl.waitEndpoints(t, 3, 10*time.Second)

	l := sleepLoad(cl, 8, 20_000, 0)
	l.waitCalls(t, 500, 30*time.Second)
	// A partition: the proxy stops forwarding in both directions, the
	// connections stay open, as when packets are dropped on the way.
	px.PauseTx()
	px.PauseRx()
	removed := poll.Until(t, ttl+10*time.Second, "the cut-off server removed from the client", func() bool {
		return !cl.rec.endpoints()[victim.addr] && !records(t, cli)[victim.addr]
	})
	l.waitCalls(t, 500, 30*time.Second)
	px.UnpauseTx()
	px.UnpauseRx()
	back := poll.Until(t, 15*time.Second, "the cut-off server back", func() bool {
		return cl.rec.endpoints()[victim.addr] && records(t, cli)[victim.addr]
	})
	l.waitCalls(t, 500, 30*time.Second)
	l.stop()
	n := etcdtest.Count(t, cli, prefix+victim.addr)
	cl.converge(t, cli, 2*time.Second)

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d", l.failures.Load(), l.calls.Load()), "0")
	figure(t, "cut-off server removed from clients", fmt.Sprintf("%s after the cut (TTL %s)", removed.Round(10*time.Millisecond), ttl), "graceful: no failed RPC")
	figure(t, "back after the heal", fmt.Sprintf("%s, %d record", back.Round(time.Millisecond), n), "≤ 3s, exactly 1")
	noFailures(t, l)
	if back > 3*time.Second {
		t.Fatalf("cut-off server back %s after the heal", back)
	}
	if n != 1 || len(records(t, cli)) != 3 {
		t.Fatalf("records of the cut-off server: %d, all: %v", n, keys(records(t, cli)))
	}
}

func TestSlowServer(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ep := c.Endpoint(0)
	startServers(t, 2, ep)
	slow := startServer(t, ep, "CHAOS_DELAY=50ms")

	measure := func(policy string, calls int) (float64, int64) {
		cl := dial(t, policy, etcdAt(ep))
		cl.waitEndpoints(t, 3, 10*time.Second)
		l := sleepLoad(cl, 8, 10_000, 0)
		l.waitCalls(t, 300, 30*time.Second) // first prices
		before := cl.attempts.snapshot()
		l.waitCalls(t, int64(calls), 60*time.Second)
		after := cl.attempts.snapshot()
		l.stop()
		noFailures(t, l)
		cl.converge(t, cli, 2*time.Second)
		return share(before, after, slow.addr)
	}
	p2c, n := measure(lb.P2CEWMA, 3_000)
	rr, m := measure(roundrobin.Name, 1_500)
	figure(t, "svckit_p2c_ewma share of the 50ms-slower server", fmt.Sprintf("%.1f %% of %d calls (round_robin: %.1f %% of %d)", 100*p2c, n, 100*rr, m), "≤ 5 %")
	if p2c > 0.05 {
		t.Fatalf("p2c sent %.1f %% of calls to the slow server", 100*p2c)
	}
	if rr < 0.25 || rr > 0.42 {
		t.Fatalf("round robin sent %.1f %% of calls to the slow server, want about a third", 100*rr)
	}
}

func TestFailingServer(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ep := c.Endpoint(0)
	startServers(t, 2, ep)
	bad := startServer(t, ep, "CHAOS_FAIL=1")
	cl := dial(t, lb.P2CEWMA, etcdAt(ep))
	cl.waitEndpoints(t, 3, 10*time.Second)

	l := sleepLoad(cl, 8, 50_000, 0)
	start := time.Now()
	poll.Until(t, 30*time.Second, "5s of load", func() bool { return time.Since(start) > 5*time.Second })
	firstFailures := l.failures.Load()
	before := cl.attempts.snapshot()
	l.waitCalls(t, 3_000, 60*time.Second)
	after := cl.attempts.snapshot()
	l.stop()
	cl.converge(t, cli, 2*time.Second)
	s, n := share(before, after, bad.addr)
	figure(t, "svckit_p2c_ewma share of the server failing with UNAVAILABLE, after 5s", fmt.Sprintf("%.2f %% of %d attempts; failed calls: %d in the first 5s, %d after",
		100*s, n, firstFailures, l.failures.Load()-firstFailures), "≤ 5 %")
	if s > 0.05 {
		t.Fatalf("p2c sent %.1f %% of attempts to the failing server", 100*s)
	}
}

func TestChurn(t *testing.T) {
	leakCheck(t)
	f := startFleet(t, 3)
	cli, cl := f.cli, f.cl
	cl.rec.reset()

	l := sleepLoad(cl, 4, 100_000, 0)
	// Every 10ms for 30s: register one instance and deregister the oldest
	// of the last 20, by up to 8 workers. They listen nowhere (127.0.x.y:9,
	// refused), as instances that come and go before anyone connects.
	const ticks = 3_000
	var (
		mu           sync.Mutex
		live         []*naming.Registrar
		regs, deregs atomic.Int64
		wg           sync.WaitGroup
		sem          = make(chan struct{}, 8)
		tick         = time.NewTicker(10 * time.Millisecond)
		start        = time.Now()
		ctx, cancel  = context.WithTimeout(context.Background(), 90*time.Second)
	)
	defer tick.Stop()
	defer cancel()
	deregister := func(r *naming.Registrar) {
		if err := r.Deregister(ctx); err != nil {
			t.Errorf("deregister: %v", err)
		}
		deregs.Add(1)
	}
	for i := 0; i < ticks && time.Since(start) < 45*time.Second && !t.Failed(); i++ {
		<-tick.C
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			addr := fmt.Sprintf("127.0.%d.%d:9", 1+i/250%250, 1+i%250)
			r, err := naming.NewRegistrar(cli, naming.Instance{Service: service, Addr: addr}, naming.WithTTL(ttl), naming.WithLogger(quiet))
			if err == nil {
				err = r.Register(ctx)
			}
			if err != nil {
				t.Errorf("register %s: %v", addr, err)
				return
			}
			regs.Add(1)
			mu.Lock()
			live = append(live, r)
			var old *naming.Registrar
			if len(live) > 20 {
				old, live = live[0], live[1:]
			}
			mu.Unlock()
			if old != nil {
				deregister(old)
			}
		})
	}
	wg.Wait()
	for _, r := range live {
		deregister(r)
	}
	churn := time.Since(start)
	converged := cl.converge(t, cli, 5*time.Second)
	l.waitCalls(t, 200, 30*time.Second)
	l.stop()
	updates, _, _ := cl.rec.counts()
	events := int(regs.Load() + deregs.Load())

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d", l.failures.Load(), l.calls.Load()), "0")
	figure(t, "churn", fmt.Sprintf("%d registrations and %d deregistrations in %s (%.0f/s each); %d balancer updates for %d etcd events",
		regs.Load(), deregs.Load(), churn.Round(100*time.Millisecond), float64(regs.Load())/churn.Seconds(), updates, events), "< 1 update per 2 events")
	figure(t, "converged after the churn", converged.Round(time.Millisecond).String(), "≤ 1s")
	noFailures(t, l)
	if updates*2 > events {
		t.Fatalf("%d balancer updates for %d etcd events: not coalesced", updates, events)
	}
	if converged > time.Second {
		t.Fatalf("converged %s after the churn", converged)
	}
}

// heapInUse reads the bytes of heap objects in use.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func Test50kKeys(t *testing.T) {
	leakCheck(t)
	const n = 50_000
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ops []clientv3.Op
	flush := func() {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn: %v", err)
		}
		ops = ops[:0]
	}
	for i := range n {
		addr := fmt.Sprintf("127.%d.%d.%d:%d", 1+i/62500, i/250%250, 1+i%250, 1000+i%50000)
		v, err := naming.Record{Addr: addr, Metadata: naming.Metadata{InstanceID: fmt.Sprintf("i-%06d", i), Version: "v1.2.3", Zone: "zone-a", Weight: 100}}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(naming.Key(naming.DefaultPrefix, service, addr), string(v)))
		if len(ops) == 128 {
			flush()
		}
	}
	flush()

	// Sample the heap while the client lists, through a balancer that
	// records the update and connects nowhere.
	base := heapInUse()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			peak = max(peak, heapInUse())
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	cl := dial(t, "none", etcdAt(c.Endpoint(0)), client.WithoutWait())
	cl.Connect()
	poll.Until(t, 60*time.Second, "50,000 endpoints at the balancer", func() bool { return cl.rec.size() == n })
	first := time.Since(start)
	close(stop)
	wg.Wait()
	if have := cl.rec.size(); have != len(records(t, cli)) {
		t.Fatalf("client has %d endpoints, etcd %d", have, len(records(t, cli)))
	}
	grow := float64(peak-min(base, peak)) / (1 << 20)

	figure(t, "first update with 50,000 endpoints", first.Round(time.Millisecond).String(), "≤ 5s")
	figure(t, "peak heap growth while listing", fmt.Sprintf("%.0f MiB (client and embedded etcd in one process)", grow), "≤ 512 MiB")
	if first > 5*time.Second {
		t.Fatalf("first update after %s", first)
	}
	if grow > 512 {
		t.Fatalf("heap grew by %.0f MiB", grow)
	}
}

func TestGarbageRecords(t *testing.T) {
	leakCheck(t)
	logs := newLogCounter()
	f := startFleet(t, 3, client.WithLogger(logs.logger()))
	cli, cl := f.cli, f.cl
	good := cl.rec.endpoints()
	cl.rec.reset()

	l := sleepLoad(cl, 4, 100_000, 0)
	big := strings.Repeat("x", 1<<20)
	garbage := map[string]func(i int) string{
		prefix + "not-json":           func(i int) string { return fmt.Sprintf("not json %d", i) },
		prefix + "wrong-types":        func(i int) string { return fmt.Sprintf(`{"Op":"add","Addr":%d}`, i) },
		prefix + "empty-addr":         func(i int) string { return fmt.Sprintf(`{"Op":0,"Addr":"","Metadata":{"instance_id":"%d"}}`, i) },
		prefix + "bad-addr":           func(i int) string { return fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:%d999999"}`, i) },
		prefix + "no-port":            func(i int) string { return fmt.Sprintf(`{"Op":0,"Addr":"host-%d"}`, i) },
		prefix + "huge":               func(i int) string { return fmt.Sprintf(`{"Op":0,"Addr":"%d%s"}`, i, big) },
		prefix + "null":               func(int) string { return "null" },
		"services/chaos-admin/x:1":    func(i int) string { return fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:%d"}`, 2000+i) },
		"services/chaosx/127.0.0.1:3": func(i int) string { return fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:%d"}`, 3000+i) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rounds = 20
	for i := range rounds {
		for k, v := range garbage {
			if _, err := cli.Put(ctx, k, v(i)); err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
	}
	// A good record after the garbage: once it is seen, so is everything
	// written before it.
	marker := "127.0.0.1:9"
	v, _ := naming.Record{Addr: marker}.Encode()
	if _, err := cli.Put(ctx, naming.Key(naming.DefaultPrefix, service, marker), string(v)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the marker record seen", func() bool { return cl.rec.endpoints()[marker] })
	l.waitCalls(t, 500, 30*time.Second)
	l.stop()
	_, removals, _ := cl.rec.counts()
	have := cl.rec.endpoints()
	delete(have, marker)
	skipped := logs.msgs["skip record"]
	inPrefix := 0
	for k := range garbage {
		if strings.HasPrefix(k, prefix) {
			inPrefix++
		}
	}

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d", l.failures.Load(), l.calls.Load()), "0")
	figure(t, "good set", fmt.Sprintf("%d endpoints, unchanged: %t, removals %d", len(have), fmt.Sprint(keys(have)) == fmt.Sprint(keys(good)), removals), "unchanged, 0 removals")
	figure(t, "log lines for garbage", fmt.Sprintf("%d for %d bad keys written %d times each (%d log records in all)", skipped, inPrefix, rounds, logs.total()), "1 per bad key")
	noFailures(t, l)
	if fmt.Sprint(keys(have)) != fmt.Sprint(keys(good)) || removals != 0 {
		t.Fatalf("good set changed: %v → %v (%d removals)", keys(good), keys(have), removals)
	}
	if skipped > inPrefix {
		t.Fatalf("%d skip logs for %d bad keys", skipped, inPrefix)
	}
}

func TestCompactionWhileDisconnected(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ep := c.Endpoint(0)
	srvs := startServers(t, 3, ep)
	px := etcdtest.NewProxy(t, ep)
	cl := dial(t, lb.P2CEWMA, etcdAt(px.Addr()))
	cl.waitEndpoints(t, 3, 10*time.Second)

	l := sleepLoad(cl, 8, 20_000, 0)
	l.waitCalls(t, 500, 30*time.Second)
	px.Cut()
	// While the client is away: one server replaced, 200 writes, and the
	// history compacted past the client's last revision.
	srvs[0].term(t)
	nu := startServer(t, ep)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 200 {
		if _, err := cli.Put(ctx, "other/churn", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Compact(ctx, cli); err != nil {
		t.Fatal(err)
	}
	px.Heal()
	converged := cl.converge(t, cli, 10*time.Second)
	if !cl.rec.endpoints()[nu.addr] {
		t.Fatalf("new server %s not seen", nu.addr)
	}
	l.waitCalls(t, 500, 30*time.Second)
	l.stop()

	figure(t, "failed RPCs", fmt.Sprintf("%d of %d", l.failures.Load(), l.calls.Load()), "0")
	figure(t, "converged after the heal", converged.Round(time.Millisecond).String(), "≤ 2s")
	noFailures(t, l)
	if converged > 2*time.Second {
		t.Fatalf("converged %s after the heal", converged)
	}
}

func TestPanics(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ep := c.Endpoint(0)
	srv := startServer(t, ep)
	cl := dial(t, lb.P2CEWMA, etcdAt(ep))

	var mu sync.Mutex
	internal, leaky := 0, []string{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 250 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var err error
				if (w+i)%2 == 0 {
					err = testsvc.Panic(ctx, cl)
				} else {
					err = testsvc.PanicStream(ctx, cl)
				}
				cancel()
				st := status.Convert(err)
				mu.Lock()
				if st.Code() == codes.Internal {
					internal++
				}
				for _, bad := range []string{"goroutine", ".go:", "/etc/shadow", "panic", "secret"} {
					if strings.Contains(st.Message(), bad) && len(leaky) < 5 {
						leaky = append(leaky, st.Message())
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	upErr := testsvc.Sleep(ctx, cl, time.Millisecond, grpc.WaitForReady(true))
	resp, err := http.Get("http://" + srv.admin + "/healthz")
	healthy := err == nil && resp.StatusCode == http.StatusOK
	if err == nil {
		_ = resp.Body.Close()
	}
	select {
	case <-srv.Exited():
		t.Fatalf("server exited:\n%s", srv.Output())
	default:
	}
	cl.converge(t, cli, 2*time.Second)

	figure(t, "panicking calls answered Internal", fmt.Sprintf("%d of 1000, messages leaking internals: %d; serving after: %t", internal, len(leaky), upErr == nil && healthy), "1000, 0, true")
	if internal != 1000 || len(leaky) != 0 || upErr != nil || !healthy {
		t.Fatalf("internal %d, leaky %q, call after: %v, healthz ok: %t", internal, leaky, upErr, healthy)
	}
}
