// Package client dials the instances of svckit services registered in etcd.
//
// A Client owns one etcd client and one naming.Builder (the gRPC resolver
// of the "etcd" scheme), as etcd's resolver.NewBuilder(cli) does: New
// creates the etcd client from a naming.ClientConfig and closes it in
// Close; NewFromEtcd borrows one the caller keeps. Client.Dial returns a
// *grpc.ClientConn to every instance of a service, resolved on
// etcd:///<prefix><service> and balanced by lb.P2CEWMA, with health checks,
// retries of idempotent methods on UNAVAILABLE, outlier ejection of
// instances that fail a quarter of their calls (lb.DefaultOutlierDetection),
// keepalive pings the App accepts, and, given a tracer provider,
// OpenTelemetry spans; WithMetrics exports the balancers' ejections to
// Prometheus. An instance that registers again on its address after a
// restart is connected at once, not after gRPC's reconnect backoff (up to
// 2 minutes). All conns of one Client share its builder, so conns to one
// service share one etcd watch.
//
// Options are of one type: given to New (or NewFromEtcd) they are the
// defaults of every Dial; given to Dial they apply to that conn, after the
// defaults. The package-level Dial is the one-call form for a program that
// needs one conn: its etcd client lives as long as the conn.
//
// A service's main usually builds its Client from the service's
// configuration with framework.Config.NewClient. This package reads no
// environment and holds no state of its own outside a Client; the balancers
// it names are registered by package lb, the one global gRPC requires. It
// leaves out the server side (package framework) and the registry records
// (package naming).
package client
