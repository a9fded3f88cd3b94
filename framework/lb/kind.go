package lb

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// callKind is what the balancer knows of a method's shape.
type callKind uint8

const (
	// kindUnknown: the method is not in the protobuf registry of this
	// process (hand-written service descriptors, or a proxy forwarding
	// methods whose code it does not link). Treated as unary.
	kindUnknown callKind = iota
	kindUnary
	// kindStream: client-, server- or bidirectional streaming.
	kindStream
)

// maxKinds bounds the cache of method kinds: a proxy forwards whatever
// method names its callers send, and they must not grow it without limit.
// Methods past the bound are looked up on every call.
const maxKinds = 4096

// kinds caches kindOf by full method name. It is copied on write, so that
// a pick reads it without a lock and without allocating.
var kinds struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]callKind]
}

// kindOf returns the kind of the method named as gRPC names it
// ("/pkg.Service/Method"), from the descriptors in
// protoregistry.GlobalFiles: generated code registers its file there, so
// every generated client this process calls is known.
//
// grpc-go does not tell a balancer whether a call is unary or streaming:
// PickInfo carries the method name and the call's context, DoneInfo the
// error, trailer and whether bytes moved, and a unary call runs as a
// stream internally. The method name and the registry are what is left.
func kindOf(method string) callKind {
	if m := kinds.m.Load(); m != nil {
		if k, ok := (*m)[method]; ok {
			return k
		}
	}
	k := lookupKind(method)
	kinds.mu.Lock()
	defer kinds.mu.Unlock()
	old := kinds.m.Load()
	if old != nil && len(*old) >= maxKinds {
		return k
	}
	next := map[string]callKind{}
	if old != nil {
		next = maps.Clone(*old)
	}
	next[method] = k
	kinds.m.Store(&next)
	return k
}

func lookupKind(method string) callKind {
	// "/pkg.Service/Method" → "pkg.Service.Method"
	name := strings.TrimPrefix(method, "/")
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return kindUnknown
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name[:i] + "." + name[i+1:]))
	if err != nil {
		return kindUnknown
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return kindUnknown
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return kindStream
	}
	return kindUnary
}
