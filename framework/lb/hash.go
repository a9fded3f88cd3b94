package lb

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"
)

// ConsistentHash is the registered name of the consistent-hash policy; it
// was "consistent_hash" (see Canonical).
const ConsistentHash = "svckit_consistent_hash"

// vnodes is the number of points per endpoint on the ring: with 160 (as in
// ketama), the load of N endpoints stays within a few percent of 1/N.
const vnodes = 160

func init() {
	balancer.Register(builder{name: ConsistentHash, newPolicy: func() policy { return &hashPolicy{} }})
}

type hashKey struct{}

// WithHashKey returns a context whose calls the ConsistentHash policy routes
// by key: the same key reaches the same endpoint while the set of endpoints
// is stable, and about 1/N of keys move when an endpoint joins or leaves. A
// call without a key goes to a random endpoint.
func WithHashKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, hashKey{}, key)
}

// hashPolicy keeps one ring over every endpoint of the last resolver
// update, built once per update; pickers map its points to ready endpoints,
// so an endpoint that is not ready passes its keys to the next point's.
type hashPolicy struct {
	ring  []point  // sorted by hash
	addrs []string // address of each ring index
}

type point struct {
	hash  uint64
	index uint32 // into addrs
}

func (h *hashPolicy) endpoints(all []resolver.Endpoint) {
	addrs := make([]string, len(all))
	for i, ep := range all {
		addrs[i] = ep.Addresses[0].Addr
	}
	slices.Sort(addrs)
	if slices.Equal(addrs, h.addrs) {
		return
	}
	ring := make([]point, 0, len(addrs)*vnodes)
	buf := make([]byte, 0, 64)
	for i, addr := range addrs {
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
	h.ring, h.addrs = ring, addrs
}

// picker resolves each ring point to the ready endpoint that serves it: its
// own if ready, else that of the next point whose endpoint is.
func (h *hashPolicy) picker(eps []ready) balancer.Picker {
	readyIdx := make(map[string]uint32, len(eps))
	for i, e := range eps {
		readyIdx[e.endpoint.Addresses[0].Addr] = uint32(i)
	}
	owner := make([]int32, len(h.addrs))
	for i, a := range h.addrs {
		owner[i] = -1
		if r, ok := readyIdx[a]; ok {
			owner[i] = int32(r)
		}
	}
	serve := make([]uint32, len(h.ring))
	next := int32(-1)
	// Two passes backwards: the second wraps the end of the ring around.
	for pass := 0; pass < 2; pass++ {
		for k := len(h.ring) - 1; k >= 0; k-- {
			if o := owner[h.ring[k].index]; o >= 0 {
				next = o
			}
			if next >= 0 {
				serve[k] = uint32(next)
			}
		}
	}
	return &hashPicker{eps: eps, ring: h.ring, serve: serve}
}

type hashPicker struct {
	eps   []ready
	ring  []point
	serve []uint32 // ready endpoint serving each ring point
}

var _ balancer.Picker = (*hashPicker)(nil)

func (p *hashPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	key, ok := info.Ctx.Value(hashKey{}).(string)
	if !ok || len(p.ring) == 0 {
		return p.eps[rand.IntN(len(p.eps))].picker.Pick(info)
	}
	return p.eps[p.serve[p.lookup(xxhash.Sum64String(key))]].picker.Pick(info)
}

// lookup returns the index of the first point at or after h, wrapping.
func (p *hashPicker) lookup(h uint64) int {
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
	return lo
}
