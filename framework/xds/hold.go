package xds

import (
	"context"
	"errors"
	"fmt"
	"sync"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// holdingCache is the snapshot cache, but it does not tell a client that
// already holds resources that they are gone because this server has not
// seen them (yet).
//
// In state-of-the-world xDS, a Listener or Cluster response that leaves out
// a resource the client holds deletes it. The snapshot cache answers a
// request with the requested resources it has, so a freshly started server
// whose first list of etcd is empty (etcd replaced or wiped, a wrong
// --prefix) or lacks a service without instance would delete those
// resources in every client that reconnects to it. A client that has
// resources of a type says so on a new stream: its first request carries
// the version it last accepted and no response nonce (the xDS protocol
// keeps the version across streams). Such a first request for a Listener
// or Cluster that names a resource missing from the snapshot (or, by
// wildcard, finds it empty) is held unanswered: the client keeps what it
// has, and a resource it never received times out on its side as usual.
// A held request is answered as soon as a snapshot has every name it asks
// for, or when the hold ends (release), after which nothing new is held.
// The hold (holdUnknown) is shorter than grpc-go's 15 s does-not-exist
// timer: a later request on a held stream, even for a name the server has,
// is held too, and must be answered before that timer fails the channel.
// Endpoints are never held: a ClusterLoadAssignment left out of a response
// is not deleted, the client keeps its endpoints.
type holdingCache struct {
	cachev3.SnapshotCache

	mu      sync.Mutex
	held    map[*heldWatch]struct{}
	expired bool // the hold has ended
}

// heldWatch is a request held back, then handed to the snapshot cache.
type heldWatch struct {
	req   *cachev3.Request
	sub   cachev3.Subscription
	value chan cachev3.Response

	mu       sync.Mutex
	cancel   func() // of the snapshot cache's watch, once handed over
	canceled bool   // by the server
}

func newHoldingCache(inner cachev3.SnapshotCache) *holdingCache {
	return &holdingCache{SnapshotCache: inner, held: map[*heldWatch]struct{}{}}
}

// CreateWatch holds the request as described on holdingCache, or passes it
// to the snapshot cache.
func (h *holdingCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, value chan cachev3.Response) (func(), error) {
	h.mu.Lock()
	hold := !h.expired && h.missing(req, sub)
	if !hold {
		h.mu.Unlock()
		return h.SnapshotCache.CreateWatch(req, sub, value)
	}
	w := &heldWatch{req: req, sub: sub, value: value}
	h.held[w] = struct{}{}
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.held, w)
		h.mu.Unlock()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.canceled = true
		if w.cancel != nil {
			w.cancel()
		}
	}, nil
}

// missing reports whether req is the first request of a stream from a
// client that holds resources of a deletable type, and the snapshot lacks
// one it names (or has none, for a wildcard).
func (h *holdingCache) missing(req *cachev3.Request, sub cachev3.Subscription) bool {
	typ := req.GetTypeUrl()
	if typ != resourcev3.ListenerType && typ != resourcev3.ClusterType {
		return false
	}
	if req.GetResponseNonce() != "" || req.GetVersionInfo() == "" {
		return false
	}
	snap, err := h.SnapshotCache.GetSnapshot(nodeGroup)
	if err != nil {
		return true // etcd has not answered yet
	}
	have := snap.GetResources(typ)
	if sub.IsWildcard() {
		return len(have) == 0
	}
	for name := range sub.SubscribedResources() {
		if _, ok := have[name]; !ok {
			return true
		}
	}
	return false
}

// SetSnapshot sets the snapshot and answers the held requests it now
// satisfies.
func (h *holdingCache) SetSnapshot(ctx context.Context, node string, snap cachev3.ResourceSnapshot) error {
	if err := h.SnapshotCache.SetSnapshot(ctx, node, snap); err != nil {
		return err
	}
	h.mu.Lock()
	var ready []*heldWatch
	for w := range h.held {
		if h.expired || !h.missing(w.req, w.sub) {
			ready = append(ready, w)
			delete(h.held, w)
		}
	}
	h.mu.Unlock()
	return h.handOver(ready)
}

// release ends the hold: every held request is answered with what the
// snapshot has, and no request is held from now on.
func (h *holdingCache) release() error {
	h.mu.Lock()
	h.expired = true
	ready := make([]*heldWatch, 0, len(h.held))
	for w := range h.held {
		ready = append(ready, w)
	}
	clear(h.held)
	h.mu.Unlock()
	return h.handOver(ready)
}

// holding returns the number of requests held.
func (h *holdingCache) holding() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// handOver passes held requests to the snapshot cache, which answers them
// now or at its next change. The response channel of a watch has room
// for its one answer, so this does not block. Every request is handed over,
// canceled, or, when the snapshot cache refuses it, held again (and tried
// again at the next SetSnapshot); the refusals are returned joined.
func (h *holdingCache) handOver(ws []*heldWatch) error {
	var errs []error
	for _, w := range ws {
		w.mu.Lock()
		if !w.canceled {
			cancel, err := h.SnapshotCache.CreateWatch(w.req, w.sub, w.value)
			if err != nil {
				errs = append(errs, fmt.Errorf("xds: hand over held %s request: %w", w.req.GetTypeUrl(), err))
				h.mu.Lock()
				h.held[w] = struct{}{}
				h.mu.Unlock()
			} else {
				w.cancel = cancel
			}
		}
		w.mu.Unlock()
	}
	return errors.Join(errs...)
}
