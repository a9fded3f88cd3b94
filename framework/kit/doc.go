// Package kit adapts go-kit endpoints to svckit's gRPC services: a thin
// client and server binding over go-kit's transport/grpc, and the standard
// endpoint middleware every remote call wants.
//
// An endpoint.Endpoint is one RPC method as a function. On the server,
// ServerHandler wraps an endpoint with its decode and encode funcs, and the
// service's hand-written or generated gRPC method calls its ServeGRPC and
// converts the error with GRPCStatus. On the client, ClientEndpoint turns a
// method of a *grpc.ClientConn (from package client) into an endpoint.
// Between the two, endpoints compose with endpoint.Middleware, chained with
// go-kit's endpoint.Chain, outermost first:
//
//	e = endpoint.Chain(
//		kit.Logging(logger, "Echo"),
//		kit.CircuitBreaker("echo"),
//		kit.RateLimit(100, 10),
//		kit.Timeout(time.Second),
//	)(e)
//
// Logging sees every outcome, including fast failures of the breaker and
// the limiter; the breaker counts the timeouts of the calls it lets
// through. CircuitBreaker and RateLimit hold state: each call makes a new
// breaker or token bucket, shared by every endpoint the returned middleware
// wraps, so build them once per method.
//
// Errors stay Go errors until the transport edge, where GRPCStatus maps
// them: an open breaker to Unavailable, a refused request to
// ResourceExhausted, a deadline to DeadlineExceeded, a status to itself,
// and anything else to Internal without its text.
//
// Wrap applies a list of middleware that may be empty (endpoint.Chain needs
// one at least).
//
// Kit leaves out what go-kit or gRPC already does well: endpoint.Chain,
// request tracing and metrics (the App's interceptors and stats handlers
// cover them), retries (the service config of package client), load
// balancing (package lb) and streaming, which go-kit endpoints do not model.
package kit
