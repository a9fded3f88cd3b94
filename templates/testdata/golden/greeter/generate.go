// Package greeter is the greeter service: the Service interface and its
// implementation, go-kit endpoints, and the gRPC transport.
package greeter

// Regenerate proto/greeter/v1 after changing the .proto, without protoc.
//go:generate go tool protogen -root proto greeter/v1/greeter.proto
