// Package peers benchmarks svckit's load shedding (framework/overload)
// beside go-zero's adaptive shedder (core/load) and kratos' BBR limiter
// (aegis/ratelimit/bbr), in the same run on the same machine. It is a
// module of its own, so that go-zero and kratos stay out of svckit's
// go.mod. Run it from the repository root with
//
//	cd bench/peers && SVCKIT_SHED_BENCH=1 go test -run TestShedding -v -timeout 30m .
//
// (about ten minutes; add -short for a smoke run of one round, about a
// minute and a half). Without SVCKIT_SHED_BENCH=1 the test binary exits at once, so that
// `go test ./...` here stays quick. It measures and prints markdown tables;
// it fails only when the run is invalid (the unloaded server failed
// calls). It logs runs where the load generator fell more than 20 ms
// behind for over 1 % of the calls, with its p99 lag: the machine, or the
// backlog of a server that queues every call, set the pace there too.
//
// # The server
//
// The test binary re-executes itself as the server: one framework.App on
// 127.0.0.1 (registered nowhere), serving one unary method that spins a
// calibrated loop for 1 ms of CPU without yielding, as a handler that
// computes does. The protection is chosen per process:
//
//   - none: --overload-cpu 0;
//   - go-zero: --overload-cpu 0 and go-zero's zrpc shedding interceptor
//     (serverinterceptors.UnarySheddingInterceptor, internal to go-zero,
//     copied without its statistics) around load.NewAdaptiveShedder with
//     zrpc's default CPU threshold (900 ‰); a shed call fails with
//     RESOURCE_EXHAUSTED. go-zero logs every call it sheds, and its
//     statistics each minute: logx.Disable() turns that off here;
//   - kratos: --overload-cpu 0 and kratos' middleware/ratelimit.Server
//     around bbr.NewLimiter() with its defaults (CPU threshold 800 ‰,
//     window 10 s in 100 buckets); a shed call fails with its 429, which
//     kratos maps to RESOURCE_EXHAUSTED;
//   - svckit: the App's default (--overload-cpu 0.8).
//
// The peers' interceptors are the App's user interceptors, after its own
// (metrics, logging, recovery); svckit's limit sheds at the call's arrival
// (grpc.InTapHandle) and its interceptor sits before logging.
//
// The server runs with GOMAXPROCS=1, so that its capacity is one core and
// the load generator has the others; it is not pinned to a CPU, so that on
// a machine shared with other work it runs on whichever core is free.
// go-zero and kratos read the CPU of the process's cgroup; outside a
// container that is the machine's, load generator and other processes
// included, which they then divide by the machine's cores.
//
// # The measure
//
// The unloaded server (protection none) is measured first, three times,
// keeping the best: the latency of one caller in a closed loop (p50, p99),
// and the peak of calls per second of four. Then, for each round (five; one
// with -short), for each offered load (1×, 2× and 5× the peak) and each
// protection in turn (the order rotates from round to round), a fresh
// server gets an open-loop load: calls start at evenly spaced times
// whatever the answers, each with a deadline of 1 s from its scheduled
// start (generous, so that an unprotected server's queue, not the deadline,
// decides its latency), at most 4,096 in flight, the latency counted from
// the scheduled start. The load is calm (0.5×) for 1.5 s, overloaded for
// 3 s, calm again for 2.5 s (-short: 1, 1.5 and 1.5 s). Reported for the
// overload:
//
//   - goodput: the calls that succeeded per second, counted by the time
//     they completed within the overload, and as a share of the peak;
//   - p50 and p99 of the calls that succeeded, among those started in it;
//   - shed: the share of calls that failed with RESOURCE_EXHAUSTED, and
//     the p50 of their latency (how soon the caller may try elsewhere);
//   - missed: the share that failed otherwise (past their deadline, or
//     not sent with 4,096 in flight);
//   - recovery: seconds from the end of the overload to the first of three
//     windows of 100 ms in a row (by scheduled start) in which every call
//     succeeded and their p99 was within three times the unloaded p99 (the
//     issue's bound for admitted calls); "never" if not by the end of the
//     run.
//
// Each figure is the median of the rounds, with [min–max].
//
// A second table shows where svckit's limit engages under a container's
// CPU quota, simulated: a server free to use two cores (GOMAXPROCS=2, not
// pinned) reads a cgroup v2 cpu.max of one core, written by the test,
// through overload.WithCgroupRoot, and is offered 0.5× to 1.2× the peak of
// one core; the same without the file, for comparison. It reports the CPU
// share the limiter read (svckit_overload_cpu_utilization, halfway through
// the load) and the share of calls shed.
package peers
