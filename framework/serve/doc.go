// Package serve holds what every svckit gRPC server shares: the size limits
// a client cannot exceed (Limits), the keepalive policy (Keepalive), and a
// graceful stop with a bound (Stop).
//
// framework.App, the proxy (framework/proxy) and the xDS server
// (framework/xds) build their servers with it, so that they agree with each
// other and with svckit's clients, which ping at ClientPingInterval. It
// leaves out listening, registration and health: their owners do those.
package serve
