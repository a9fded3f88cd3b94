package serve

import (
	"errors"

	"google.golang.org/grpc"
)

// Limits bounds what one client can ask of a server. Start from
// DefaultLimits and change what you need: a zero field is refused, not
// read as its default.
type Limits struct {
	// MaxRecvMsgSize is the largest message received, in bytes; default
	// 4 MiB, gRPC's own.
	MaxRecvMsgSize int
	// MaxSendMsgSize is the largest message sent, in bytes; default 4 MiB
	// (gRPC's own is 2 GiB): a handler that builds a larger answer fails
	// the call rather than the connection's peer.
	MaxSendMsgSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection;
	// default 1000 (gRPC's own is unbounded, which HTTP/2 rapid reset,
	// CVE-2023-44487, exploits).
	MaxConcurrentStreams uint32
}

// DefaultLimits returns 4 MiB messages each way and 1000 concurrent
// streams per connection.
func DefaultLimits() Limits {
	return Limits{MaxRecvMsgSize: 4 << 20, MaxSendMsgSize: 4 << 20, MaxConcurrentStreams: 1000}
}

// Validate returns an error naming each field that is not positive.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxRecvMsgSize <= 0 {
		errs = append(errs, errors.New("serve: MaxRecvMsgSize must be positive"))
	}
	if l.MaxSendMsgSize <= 0 {
		errs = append(errs, errors.New("serve: MaxSendMsgSize must be positive"))
	}
	if l.MaxConcurrentStreams == 0 {
		errs = append(errs, errors.New("serve: MaxConcurrentStreams must be positive"))
	}
	return errors.Join(errs...)
}

// ServerOptions returns the gRPC server options that apply l.
func (l Limits) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(l.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
	}
}
