package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
)

var (
	// errFull: every cached backend connection carries calls, and the cache
	// is at its bound.
	errFull = errors.New("proxy: backend connections at their limit, all in use")
	// errClosed: the proxy is stopping.
	errClosed = errors.New("proxy: closed")
)

// backends caches one connection per svckit service, at most max of them.
// When a new service needs one and the cache is full, the connection used
// least recently among those carrying no call is closed.
type backends struct {
	dial func(ctx context.Context, service string) (*grpc.ClientConn, error)
	max  int

	mu     sync.Mutex
	conns  map[string]*backend
	tick   uint64
	closed bool
}

// backend is one cached connection.
type backend struct {
	service  string
	cc       *grpc.ClientConn
	inflight int    // calls using cc now
	used     uint64 // tick of the last acquire
}

func newBackends(max int, dial func(context.Context, string) (*grpc.ClientConn, error)) *backends {
	return &backends{dial: dial, max: max, conns: map[string]*backend{}}
}

// acquire returns the connection of service, dialled if needed; release it
// when the call ends.
func (b *backends) acquire(ctx context.Context, service string) (*backend, error) {
	var evicted *backend
	defer func() {
		if evicted != nil {
			_ = evicted.cc.Close()
		}
	}()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	b.tick++
	if be, ok := b.conns[service]; ok {
		be.inflight++
		be.used = b.tick
		return be, nil
	}
	if len(b.conns) >= b.max {
		for _, be := range b.conns {
			if be.inflight == 0 && (evicted == nil || be.used < evicted.used) {
				evicted = be
			}
		}
		if evicted == nil {
			return nil, errFull
		}
		delete(b.conns, evicted.service)
	}
	// Dial does no I/O with WithoutWait: holding the lock is cheap.
	cc, err := b.dial(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial %s: %w", service, err)
	}
	be := &backend{service: service, cc: cc, inflight: 1, used: b.tick}
	b.conns[service] = be
	return be, nil
}

// release ends one call's use of be.
func (b *backends) release(be *backend) {
	b.mu.Lock()
	be.inflight--
	b.mu.Unlock()
}

// len returns how many connections are cached.
func (b *backends) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// close closes every connection; acquire fails from then on.
func (b *backends) close() error {
	b.mu.Lock()
	conns := b.conns
	b.conns, b.closed = map[string]*backend{}, true
	b.mu.Unlock()
	var errs []error
	for _, be := range conns {
		if err := be.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("proxy: close %s: %w", be.service, err))
		}
	}
	return errors.Join(errs...)
}
