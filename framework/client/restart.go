package client

import (
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/naming"
)

// restartBuilder builds with rb a resolver whose updates reset the
// reconnect backoff of conn when an instance registers again on an address
// the conn already had, with another instance id: the instance restarted
// there. gRPC waits out a subchannel's backoff (1 s, growing 1.6 times a
// failure to 120 s) before it connects again, so a client whose instances
// were all down for 10 s would wait up to 6 s more for them, and after a
// longer outage up to 2 minutes; the record written again is the news
// that the address serves. The records of instances that come back on new
// addresses need nothing: their subchannels are new.
type restartBuilder struct {
	rb   resolver.Builder
	conn *atomic.Pointer[grpc.ClientConn] // set once the conn exists
}

func (b restartBuilder) Scheme() string { return b.rb.Scheme() }

func (b restartBuilder) Build(t resolver.Target, cc resolver.ClientConn, o resolver.BuildOptions) (resolver.Resolver, error) {
	return b.rb.Build(t, &restartWatch{ClientConn: cc, conn: b.conn}, o)
}

// restartWatch passes a resolver's updates to gRPC and watches them for
// instances that restarted.
type restartWatch struct {
	resolver.ClientConn
	conn *atomic.Pointer[grpc.ClientConn]

	mu  sync.Mutex
	ids map[string]string // address → instance id, of the last update
}

func (w *restartWatch) UpdateState(s resolver.State) error {
	err := w.ClientConn.UpdateState(s)
	if w.restarted(s.Endpoints) {
		if cc := w.conn.Load(); cc != nil {
			cc.ResetConnectBackoff()
		}
	}
	return err
}

// restarted records the instance id of every endpoint and reports whether
// one of them has changed on an address of the last update.
func (w *restartWatch) restarted(eps []resolver.Endpoint) bool {
	ids := make(map[string]string, len(eps))
	for _, ep := range eps {
		if md, ok := naming.MetadataOf(ep); ok && md.InstanceID != "" && len(ep.Addresses) > 0 {
			ids[ep.Addresses[0].Addr] = md.InstanceID
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	again := false
	for addr, id := range ids {
		if old, ok := w.ids[addr]; ok && old != id {
			again = true
			break
		}
	}
	w.ids = ids
	return again
}
