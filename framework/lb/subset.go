package lb

import (
	mrand "math/rand/v2"
	"slices"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc/resolver"
)

// subset keeps the size endpoints with the highest rendezvous score for
// key: when an endpoint joins or leaves, each client's subset changes by at
// most that endpoint.
func subset(eps []resolver.Endpoint, key string, size int) []resolver.Endpoint {
	type scored struct {
		score uint64
		ep    resolver.Endpoint
	}
	s := make([]scored, len(eps))
	d := xxhash.New()
	for i, ep := range eps {
		d.Reset()
		_, _ = d.WriteString(key)
		_, _ = d.WriteString("/")
		_, _ = d.WriteString(ep.Addresses[0].Addr)
		s[i] = scored{d.Sum64(), ep}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	out := make([]resolver.Endpoint, size)
	for i := range out {
		out[i] = s[i].ep
	}
	return out
}

// shuffled returns eps in a random order, leaving eps unchanged.
func shuffled(eps []resolver.Endpoint) []resolver.Endpoint {
	out := slices.Clone(eps)
	mrand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
