// Package bench holds benchmarks that compare svckit's service naming
// (package framework/naming: Registrar and resolver Builder) with etcd's own
// naming (go.etcd.io/etcd/client/v3/naming/resolver and endpoints.Manager) in
// the same run, against a real embedded etcd (framework/etcdtest) and real
// gRPC servers on 127.0.0.1. Nothing is mocked.
//
// The package has no code of its own; the naming benchmarks are in
// naming_test.go, those of framework.App in lifecycle_test.go, those of the
// load-balancing policies in lb_test.go and those of the client
// (framework/client) in dial_test.go.
//
//   - BenchmarkRegisterToFirstRPC/{svckit,etcd}: a client connection already
//     resolves an empty service (its resolver has listed the empty prefix and
//     is watching it). Timed: registering one instance (svckit: NewRegistrar
//     and Register; etcd: a lease and endpoints.Manager.AddEndpoint) until
//     the first health Check RPC through that connection succeeds. Reports
//     the median and 90th percentile as ms-median and ms-p90.
//
//   - BenchmarkResolveN/{svckit,etcd}/{1000,10000}: N realistic records
//     (about 200 bytes each) are in etcd. Timed: a fresh resolver (a new
//     Builder and a new ClientConn each iteration) from grpc.NewClient and
//     Connect until its balancer holds a resolver state with N endpoints. A
//     tiny balancer ("bench_counter") observes the state, so nothing dials the
//     fake addresses. Reports ms-median and ms-p90.
//
//   - BenchmarkBareGRPCHealthCheck and BenchmarkResolvedHealthCheck/{svckit,
//     etcd}: the steady-state cost of a unary health Check RPC over a
//     passthrough target and over etcd:/// targets, all with round_robin, so
//     that the resolver's steady-state cost shows as the difference (about 0).
//
// The lifecycle benchmarks time framework.App itself against the same kind
// of embedded etcd, with real listeners and a quiet logger:
//
//   - BenchmarkAppStart/{shared-client,own-client}: framework.New is called
//     untimed; timed is Run from its call until Started is closed, that is
//     until the gRPC listener is bound, the server runs and the instance is
//     registered (lease granted, record put). shared-client passes an etcd
//     client that is already connected (WithEtcd); own-client lets Run
//     create its own from the configuration, so the difference is the cost of
//     creating that client and connecting it on the first request. Each
//     iteration then stops the App untimed and fails unless Run returns nil.
//     Reports ms-median and ms-p90.
//
//   - BenchmarkAppStop/{delay=0,delay=default}: an idle App that has started
//     (shared client, no signal handling). Timed: from the cancellation of
//     Run's context, which feeds the same ordered shutdown as the App's signal
//     actor (readiness off, deregister, propagation delay, graceful stop),
//     until Run returns nil. delay=default keeps the default propagation
//     delay of 1s, so run it with a small count (-benchtime 3x). Reports
//     ms-median and ms-p90.
//
//   - BenchmarkAppStop/sigterm-process: the real thing in a child process.
//     framework/testdata/testserver is built once (go build in the module
//     root), then each iteration starts it with --etcd and
//     TESTSERVER_PROPAGATION_DELAY=1ms and waits, untimed, for "msg=serving"
//     on its stderr. Timed: from SIGTERM until the process has exited and
//     been reaped (exit status 0 required). Reports ms-median and ms-p90 of
//     the stop, and ms-start-median and ms-start-p90: from starting the
//     process until its serving line appears (exec, runtime and package
//     initialisation, etcd client, registration).
//
// The load-balancing benchmarks drive the real balancers of framework/lb
// (and grpc-go's round_robin for comparison) through grpc-go's public
// balancer API, without a channel:
//
//   - BenchmarkPick/{svckit_p2c_ewma,svckit_weighted_round_robin,
//     svckit_random,svckit_consistent_hash,round_robin}/{3,100,1000}: a
//     harness implementing balancer.ClientConn builds the policy from its
//     registered builder (config from its ParseConfig), hands it N
//     endpoints with "svckit.weight" 1, 2, 3 in turn, and moves each
//     SubConn it creates (fakes that never dial) through CONNECTING to
//     READY, and healthy through the health listener pickfirst registers,
//     as a channel would. Once the published picker is the policy's own and
//     reaches all N endpoints, timed is one Pick and, if the result has
//     one, its Done, as svckit_p2c_ewma's per-call bookkeeping happens
//     there; svckit_consistent_hash picks with lb.WithHashKey over 4096
//     keys. Reports ns/op and allocs/op, and
//     ms-ramp: the untimed time from the first SubConn's READY to the last
//     picker, that is N picker rebuilds (every state change of an endpoint
//     rebuilds the policy's picker over all ready endpoints).
//
// The client benchmarks run real servers on 127.0.0.1 and, for svckit,
// framework.Apps registered in an embedded etcd, with the test service
// svckit.test.Test (a copy of framework/internal/testsvc, which is internal
// to framework/):
//
//   - BenchmarkUnary/{bare,svckit}/{trace=off,trace=on}: Sleep(0) calls from
//     8×GOMAXPROCS goroutines (RunParallel). bare is grpc.NewServer and
//     grpc.NewClient on passthrough:/// with round_robin; svckit is a
//     framework.App and a client.Client with round_robin (the same
//     balancer) and the service marked idempotent, with everything else
//     the client and the App add: tracing interceptors, Prometheus, logging
//     and recovery interceptors, the retry policy, client-side health
//     checking, keepalive. trace=off leaves bare without stats handlers and
//     svckit without a tracer provider (no tracing); trace=on gives both an
//     SDK tracer provider that samples every span and exports them in
//     batches to a discarding exporter (otelgrpc handlers on both sides for
//     bare, framework.WithTracerProvider and client.WithTracerProvider for
//     svckit). Reports rps, and us-p50 and us-p99: the latency of calls in
//     microseconds.
//
//   - BenchmarkTail/{svckit_p2c_ewma,round_robin}/{slow,failing}: three
//     framework.Apps of one service and 32 concurrent callers through
//     a client.Client with the policy, the test service marked idempotent
//     (retried on UNAVAILABLE, 3 attempts). One App is bad: in slow, a
//     server interceptor adds 20ms to each call; in failing, it fails each
//     call at once with UNAVAILABLE while its health stays SERVING. The 32
//     callers first warm up until every instance has had an attempt; then
//     b.N calls are timed. Reports %-to-slow or %-to-failing (the share of
//     attempts, counted on the servers, that the bad instance got),
//     %-errors and attempts/call (failing only), rps, and ms-p50 and ms-p99
//     of calls. The warm-up is concurrent on purpose: with one sequential
//     caller, svckit_p2c_ewma can starve a healthy instance that became ready
//     after the failing one failed its first call, because a cold endpoint
//     is priced at the mean of the warm estimates when the picker is built
//     (here the failing one's 250ms penalty), and that price stays fixed
//     while the failing one's estimate decays below it between failures.
//
// Every benchmark that needs etcd starts its own embedded etcd, and there
// are no tests, so a plain `go test ./bench/` runs nothing and ends at once.
// Run them with, e.g.:
//
//	go test -run '^$' -bench . -benchtime 20x -count 1 ./bench/
//	go test -run '^$' -bench 'ResolveN/.*/10000' -benchtime 5x ./bench/
//	go test -run '^$' -bench 'HealthCheck' -benchtime 2s ./bench/
//	go test -run '^$' -bench 'AppStart|AppStop/(delay=0|sigterm)' -benchtime 20x ./bench/
//	go test -run '^$' -bench 'AppStop/delay=default' -benchtime 3x ./bench/
//	go test -run '^$' -bench 'Pick' -benchtime 1s ./bench/
//	go test -run '^$' -bench 'Unary|Tail' -benchtime 3s ./bench/
//
// The timed benchmarks use a fixed iteration count (-benchtime Nx): each
// iteration of the first two takes milliseconds and does untimed setup and
// teardown, so time-based -benchtime over-runs its budget. The Pick, Unary
// and Tail benchmarks are throughput benchmarks and take a duration. Add
// -cpuprofile to see where the time goes.
package bench
