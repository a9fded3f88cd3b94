// Package proxy is svckit's transparent L7 gRPC proxy: one listening
// address through which clients that cannot embed svckit (other languages,
// tools, other teams) reach every service registered in etcd.
//
// A Proxy serves a grpc.Server whose only handler is an unknown-service
// handler. For each call it reads the gRPC service from the full method
// ("/pkg.Svc/Method"), finds the svckit service whose instances publish that
// gRPC service in their registration metadata (naming.Metadata.Services,
// which framework.App fills), and forwards the call over a connection that
// a client.Client dials to that svckit service: etcd resolution, svckit's
// balancers, health checking and the client's retry policy, as a thick
// client gets them. Every call is forwarded as a bidirectional stream of
// raw frames, so unary and all streaming kinds work for any method of any
// service with no generated code, and messages are never decoded. As the
// proxy cannot tell a long stream from a slow unary call, it marks each
// call with lb.WithUnknownAsStream: p2c_ewma counts a call of a method that
// the proxy's protobuf registry does not know as a stream (in flight while
// open, its duration no latency sample), so a long download through the
// proxy does not keep its instance out of the calls that follow.
//
// The proxy accepts at most 64 KiB of headers a call (method name and
// metadata; grpc-go's default is 16 MiB); a larger call fails at the
// client with codes.Internal, before any backend is picked.
// WithMaxHeaderListSize changes it.
//
// The parts: a routing table fed by one resolver over the whole key prefix
// (routes.go), a bounded cache of one *grpc.ClientConn per svckit service
// (backends.go), a pass-through codec (codec.go), the metadata filter
// (metadata.go), and the forwarding handler (proxy.go).
//
// Deadlines propagate (the outgoing call's context derives from the
// incoming one), request metadata and trace context (traceparent,
// tracestate, baggage) pass through minus hop-by-hop and transport headers,
// response headers and trailers pass back, and the backend's status is
// returned unchanged. A gRPC service that no instance publishes gets
// codes.Unimplemented; a known one with no instance left gets
// codes.Unavailable. The proxy's own health service is served locally.
//
// Left out: the proxy neither decodes nor transforms messages (no
// transcoding, no per-method policy), does not serve server reflection, and
// does not start trace spans of its own; trace context crosses it untouched.
package proxy
