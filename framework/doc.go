// Package framework is svckit's public face: App runs a gRPC service that
// registers itself in etcd, and Config holds the standard flags and
// environment of every svckit service.
//
// A service's main builds an App with New, registers its handlers on
// App.GRPC, and calls App.Run. Run listens, serves, registers the instance in
// etcd under a lease (see package naming), serves the admin endpoints, and
// waits for a signal, the context, or a failing part. It then stops in this
// order: readiness and health turn NOT_SERVING; the etcd record is deleted
// and its lease revoked; a propagation delay lets clients drop the instance;
// the gRPC server stops gracefully, then hard; the admin server and user
// actors stop; telemetry is flushed and the etcd client closed. The whole
// stop has one deadline, the shutdown timeout plus the propagation delay
// after it began, and Run returns at most 1 s after it (see App.Run). A
// second signal cuts every wait short.
//
// Each default is a plug: the registrar (WithRegistrar), interceptors, the
// tracer provider and the logger are options; more actors join with Add.
//
// The client side lives in package client (Config.NewClient builds one
// from the same settings), the balancers in package lb; this one leaves
// them out.
package framework
