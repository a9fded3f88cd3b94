package lb

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc/balancer"
)

// ConsistentHash is the name of the consistent-hash policy.
const ConsistentHash = "consistent_hash"

// vnodes is the number of points per endpoint on the ring: with 160 (as in
// ketama), the load of N endpoints stays within a few percent of 1/N.
const vnodes = 160

func init() {
	balancer.Register(builder{name: ConsistentHash, newPolicy: func() policy { return hashPolicy{} }})
}

type hashKey struct{}

// WithHashKey returns a context whose calls the consistent_hash policy routes
// by key: the same key reaches the same endpoint while the set of endpoints
// is stable, and about 1/N of keys move when an endpoint joins or leaves. A
// call without a key goes to a random endpoint.
func WithHashKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, hashKey{}, key)
}

type hashPolicy struct{}

type point struct {
	hash  uint64
	index uint32
}

// picker places vnodes points per endpoint, hashed from its address, so
// the ring depends on the set of addresses, not their order.
func (hashPolicy) picker(eps []ready) balancer.Picker {
	ring := make([]point, 0, len(eps)*vnodes)
	buf := make([]byte, 0, 64)
	for i, e := range eps {
		addr := e.endpoint.Addresses[0].Addr
		for v := range vnodes {
			buf = append(append(append(buf[:0], addr...), '#'), strconv.Itoa(v)...)
			ring = append(ring, point{hash: xxhash.Sum64(buf), index: uint32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	return &hashPicker{eps: eps, ring: ring}
}

type hashPicker struct {
	eps  []ready
	ring []point
}

var _ balancer.Picker = (*hashPicker)(nil)

func (p *hashPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	key, ok := info.Ctx.Value(hashKey{}).(string)
	if !ok {
		return p.eps[rand.IntN(len(p.eps))].picker.Pick(info)
	}
	return p.eps[p.lookup(xxhash.Sum64String(key))].picker.Pick(info)
}

// lookup returns the endpoint of the first point at or after h.
func (p *hashPicker) lookup(h uint64) uint32 {
	lo, hi := 0, len(p.ring)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.ring[m].hash < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(p.ring) {
		lo = 0
	}
	return p.ring[lo].index
}
