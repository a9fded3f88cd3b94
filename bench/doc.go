// Package bench holds benchmarks that compare svckit's service naming
// (package framework/naming: Registrar and resolver Builder) with etcd's own
// naming (go.etcd.io/etcd/client/v3/naming/resolver and endpoints.Manager) in
// the same run, against a real embedded etcd (framework/etcdtest) and real
// gRPC servers on 127.0.0.1. Nothing is mocked.
//
// The package has no code of its own; the naming benchmarks are in
// naming_test.go, those of framework.App in lifecycle_test.go.
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
//     client that is already connected (WithEtcdClient); own-client lets Run
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
// Every benchmark starts its own embedded etcd, so a plain
// `go test ./bench/` runs nothing and ends at once. Run them with, e.g.:
//
//	go test -run '^$' -bench . -benchtime 20x -count 1 ./bench/
//	go test -run '^$' -bench 'ResolveN/.*/10000' -benchtime 5x ./bench/
//	go test -run '^$' -bench 'HealthCheck' -benchtime 2s ./bench/
//	go test -run '^$' -bench 'AppStart|AppStop/(delay=0|sigterm)' -benchtime 20x ./bench/
//	go test -run '^$' -bench 'AppStop/delay=default' -benchtime 3x ./bench/
//
// The timed benchmarks use a fixed iteration count (-benchtime Nx): each
// iteration of the first two takes milliseconds and does untimed setup and
// teardown, so time-based -benchtime over-runs its budget. Add -cpuprofile
// to see where the time goes.
package bench
