// Package bench holds benchmarks that compare svckit's service naming
// (package framework/naming: Registrar and resolver Builder) with etcd's own
// naming (go.etcd.io/etcd/client/v3/naming/resolver and endpoints.Manager) in
// the same run, against a real embedded etcd (framework/etcdtest) and real
// gRPC servers on 127.0.0.1. Nothing is mocked.
//
// The package has no code of its own; everything is in naming_test.go.
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
// Every benchmark starts its own embedded etcd, so a plain
// `go test ./bench/` runs nothing and ends at once. Run them with, e.g.:
//
//	go test -run '^$' -bench . -benchtime 20x -count 1 ./bench/
//	go test -run '^$' -bench 'ResolveN/.*/10000' -benchtime 5x ./bench/
//	go test -run '^$' -bench 'HealthCheck' -benchtime 2s ./bench/
//
// The timed benchmarks use a fixed iteration count (-benchtime Nx): each
// iteration of the first two takes milliseconds and does untimed setup and
// teardown, so time-based -benchtime over-runs its budget. Add -cpuprofile
// to see where the time goes.
package bench
