package lb

import (
	"context"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// callKind is what the balancer knows of a method's shape.
type callKind uint8

const (
	// kindUnknown: the method is not in the protobuf registry of this
	// process (hand-written service descriptors, or a proxy forwarding
	// methods whose code it does not link). Treated as unary, or as a
	// stream for a call whose context says so (WithUnknownAsStream).
	kindUnknown callKind = iota
	kindUnary
	// kindStream: client-, server- or bidirectional streaming.
	kindStream
)

type unknownAsStreamKey struct{}

// WithUnknownAsStream returns a context whose calls p2c_ewma counts as
// streams (in flight while open, no latency sample) when their method is
// not in this process's protobuf registry; a method the registry knows
// keeps its declared kind. Without it such a call counts as unary, its
// duration a latency sample. A proxy forwarding services whose generated
// code it does not link marks its calls so, as any of them may be a long
// stream: svckit proxy does.
func WithUnknownAsStream(ctx context.Context) context.Context {
	return context.WithValue(ctx, unknownAsStreamKey{}, true)
}

// pickKind returns the kind of the call being picked.
func (c *kindCache) pickKind(info balancer.PickInfo) callKind {
	k := c.kindOf(info.FullMethodName)
	if k == kindUnknown && info.Ctx != nil && info.Ctx.Value(unknownAsStreamKey{}) != nil {
		return kindStream
	}
	return k
}

// maxKinds bounds the cache of method kinds. Only methods found in the
// registry are cached, a set the program's descriptors bound, so the bound
// is a backstop against descriptors registered at run time without end;
// methods past it are looked up on every call.
const maxKinds = 4096

// maxMethodLen is the longest method name looked up. Protobuf names have no
// length limit, but a real "/pkg.Service/Method" is far shorter; a longer
// name is of unknown kind without hashing it into the registry.
const maxMethodLen = 1024

// kindCache caches kindOf by full method name, for the methods found in
// the registry: a proxy forwards whatever method names its callers send,
// and they must not grow the cache, whatever their number or length. It is
// copied on write, so that a pick reads it without a lock and without
// allocating. Each balancer has its own; the zero value is empty.
type kindCache struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]callKind]
}

// kindOf returns the kind of the method named as gRPC names it
// ("/pkg.Service/Method"), from the descriptors in
// protoregistry.GlobalFiles: generated code registers its file there, so
// every generated client this process calls is known. A method that is
// not there is kindUnknown, looked up again on its next call (it costs a
// registry read and allocates nothing).
//
// grpc-go does not tell a balancer whether a call is unary or streaming:
// PickInfo carries the method name and the call's context, DoneInfo the
// error, trailer and whether bytes moved, and a unary call runs as a
// stream internally. The method name and the registry are what is left.
func (c *kindCache) kindOf(method string) callKind {
	if m := c.m.Load(); m != nil {
		if k, ok := (*m)[method]; ok {
			return k
		}
	}
	k := lookupKind(method)
	if k == kindUnknown {
		return k
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxKinds {
		return k
	}
	next := map[string]callKind{}
	if old != nil {
		next = maps.Clone(*old)
	}
	// A clone, so that the key holds no larger buffer the name is part of.
	next[strings.Clone(method)] = k
	c.m.Store(&next)
	return k
}

func lookupKind(method string) callKind {
	if len(method) > maxMethodLen {
		return kindUnknown
	}
	// "/pkg.Service/Method" → service "pkg.Service", method "Method".
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return kindUnknown
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return kindUnknown
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return kindUnknown
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return kindUnknown
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return kindStream
	}
	return kindUnary
}
