package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/internal/poll"
	"github.com/svckit/svckit/internal/testsvc"
)

// The capacity of a chaos server in the overload scenario: each call burns
// 2 ms of CPU within a simulated cgroup quota of a fifth of a core, so an
// instance serves 100 calls/s at most, and sheds above 80 % of its quota.
// The App's own work is not throttled but counts towards the quota: about
// 0.5 ms of CPU a call measured on a busy 2-core machine, which makes the
// instance 80 % busy at about 65 calls/s.
const (
	cpuPerCall  = 2 * time.Millisecond
	cpuQuota    = "20000 100000"
	capacityRPS = 100.0
)

// sumSnapshots adds the attempts per backend of conns.
func sumSnapshots(conns []*conn) map[string]int64 {
	out := map[string]int64{}
	for _, c := range conns {
		for k, v := range c.attempts.snapshot() {
			out[k] += v
		}
	}
	return out
}

// One instance of three offered five times its capacity by a caller of
// its own: it sheds, and the fleet's clients, offering less than two
// instances can serve, move to the other two without a call missing its
// deadline.
func TestOverloadedInstance(t *testing.T) {
	leakCheck(t)
	c := etcdtest.Start(t)
	ep := c.Endpoint(0)
	env := []string{"CHAOS_CPU=" + cpuPerCall.String(), "CHAOS_CGROUP_ROOT=" + cgroupDir(t, cpuQuota)}
	srvs := startServers(t, 3, ep, env...)
	hot := srvs[0]
	seen := newAttemptCodes()
	var conns []*conn
	for range 2 {
		cl := dial(t, lb.P2CEWMA, etcdAt(ep), client.WithGRPCOption(grpc.WithStatsHandler(seen)))
		cl.waitEndpoints(t, 3, 10*time.Second)
		conns = append(conns, cl)
	}

	// 40 % of two instances' capacity, about half of it with the App's own
	// CPU counted, from 4 workers on 2 conns.
	const fleetRPS, timeout = 0.8 * capacityRPS, 5 * time.Second
	l := startPaced(4, fleetRPS, 6_000, timeout, func(ctx context.Context, w int) error {
		return testsvc.Sleep(ctx, conns[w%2], 0)
	})
	t.Cleanup(func() { l.stop() })
	since := time.Now()
	poll.Until(t, 10*time.Second, "2s of fleet load", func() bool { return time.Since(since) > 2*time.Second })
	before := sumSnapshots(conns)
	poll.Until(t, 10*time.Second, "3s more", func() bool { return time.Since(since) > 5*time.Second })
	calm, calmN := share(before, sumSnapshots(conns), hot.addr)

	shedBefore, _ := hot.metric("svckit_overload_shed_total")
	g := startGenerator(t, hot.addr, 5*capacityRPS, 12*time.Second, time.Second)
	overload := time.Now()
	shedAfter := poll.Until(t, 10*time.Second, "the hot instance sheds", func() bool {
		v, _ := hot.metric("svckit_overload_shed_total")
		return v > shedBefore
	})
	poll.Until(t, 10*time.Second, "1s of shedding", func() bool { return time.Since(overload) > shedAfter+time.Second })
	during := sumSnapshots(conns)
	poll.Until(t, 20*time.Second, "5s more", func() bool { return time.Since(overload) > shedAfter+6*time.Second })
	hotShare, hotN := share(during, sumSnapshots(conns), hot.addr)
	r := g.report(t, 30*time.Second)
	outs := l.stop()
	shed, _ := hot.metric("svckit_overload_shed_total")
	n := tally(outs)
	failed := len(outs) - n[codes.OK]
	offered := float64(r.Sent+r.Skipped) / r.Elapsed.Seconds()

	figure(t, "fleet calls missing their deadline", fmt.Sprintf("%d of %d (%.0f calls/s, %s timeout; p99 %s, max %s)",
		n[codes.DeadlineExceeded], len(outs), fleetRPS, timeout, quantile(outs, 0.99).Round(time.Millisecond), quantile(outs, 1).Round(time.Millisecond)), "0")
	figure(t, "fleet calls failed", fmt.Sprintf("%d; attempts shed and retried elsewhere: %d", failed, seen.code(codes.ResourceExhausted)), "≤ 0.1 %")
	figure(t, "fleet's share of attempts to the hot instance", fmt.Sprintf("%.1f %% of %d while it shed (%.1f %% of %d before)", 100*hotShare, hotN, 100*calm, calmN), "≤ 10 %")
	figure(t, "hot instance", fmt.Sprintf("offered %.0f calls/s (%.1f× its %.0f), served %d, shed %.0f in all; shedding %s after the overload began",
		offered, offered/capacityRPS, capacityRPS, r.OK, shed-shedBefore, shedAfter.Round(10*time.Millisecond)), "sheds")
	logOverload(t, srvs)
	checkOverload(t, n, hotShare, shed-shedBefore, offered, r)
}

// logOverload logs the load shedding state of srvs.
func logOverload(t *testing.T, srvs []*server) {
	t.Helper()
	for _, s := range srvs {
		shed, _ := s.metric("svckit_overload_shed_total")
		cpu, _ := s.metric("svckit_overload_cpu_utilization")
		limit, _ := s.metric("svckit_overload_limit")
		t.Logf("server %s: shed %.0f, CPU %.2f of its quota, limit %.0f", s.addr, shed, cpu, limit)
	}
}

// checkOverload holds the overload scenario's figures to their bounds. A
// fleet call fails only if each of its three attempts is shed, or if its
// conn's retry budget is spent (it gains 0.1 a success; the forced pick
// of the hot instance, once a second per conn, spends 1): about never,
// hence a bound of 0.1 %.
func checkOverload(t *testing.T, n map[codes.Code]int, hotShare, shed, offered float64, r genReport) {
	t.Helper()
	calls := 0
	for _, v := range n {
		calls += v
	}
	if n[codes.DeadlineExceeded] != 0 {
		t.Errorf("%d fleet calls missed their deadline", n[codes.DeadlineExceeded])
	}
	if failed := calls - n[codes.OK]; failed*1000 > calls {
		t.Errorf("%d of %d fleet calls failed: %v", failed, calls, n)
	}
	if hotShare > 0.10 {
		t.Errorf("the fleet sent %.1f %% of its attempts to the shedding instance", 100*hotShare)
	}
	if shed == 0 || r.Shed == 0 || offered < 4.5*capacityRPS {
		t.Errorf("hot instance shed %.0f (generator saw %d) at %.0f calls/s offered", shed, r.Shed, offered)
	}
}
