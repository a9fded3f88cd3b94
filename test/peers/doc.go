// Package peers tests svckit beside other Go gRPC frameworks linked into
// the same program, as during a migration service by service. It is a
// module of its own, so that those frameworks (go-zero's zrpc alone pulls
// in 813 packages outside the standard library) stay out of svckit's
// go.mod.
package peers
