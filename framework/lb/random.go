package lb

import (
	"math/rand/v2"

	"google.golang.org/grpc/balancer"
)

// Random is the registered name of the uniform random policy; it was
// "random" (see Canonical).
const Random = "svckit_random"

func init() {
	balancer.Register(builder{name: Random, newPolicy: func() policy { return randomPolicy{} }})
}

type randomPolicy struct{}

func (randomPolicy) picker(eps []ready) balancer.Picker { return &randomPicker{eps: eps} }

type randomPicker struct{ eps []ready }

var _ balancer.Picker = (*randomPicker)(nil)

func (p *randomPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return p.eps[rand.IntN(len(p.eps))].picker.Pick(info)
}
