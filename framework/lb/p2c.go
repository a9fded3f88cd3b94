package lb

import (
	"math/rand/v2"

	"google.golang.org/grpc/balancer"
)

// P2CEWMA is the registered name of the power-of-two-choices policy. It
// used to be "p2c_ewma", which go-zero's p2c balancer registers too, so
// svckit no longer registers that name (see Canonical).
const P2CEWMA = "svckit_p2c_ewma"

func init() {
	balancer.Register(builder{name: P2CEWMA, newPolicy: func() policy { return p2cPolicy{kinds: &kindCache{}} }})
}

type p2cPolicy struct {
	kinds *kindCache // shared by the balancer's pickers
}

func (p p2cPolicy) picker(eps []ready) balancer.Picker {
	// A cold endpoint (no finished call yet) is priced as the cheapest
	// healthy warm one: it gets calls at once, and its in-flight count keeps
	// a burst from flooding it. Failing endpoints do not set the price, or a
	// new endpoint would look as bad as a broken one and starve.
	cold := 0.0
	for _, e := range eps {
		if e.stats.failing.Load() {
			continue
		}
		if l, ok := e.stats.latency(); ok && (cold == 0 || l < cold) {
			cold = l
		}
	}
	if cold == 0 {
		cold = float64(minLatency)
	}
	return &p2cPicker{eps: eps, cold: cold, kinds: p.kinds}
}

type p2cPicker struct {
	eps   []ready
	cold  float64
	kinds *kindCache
}

var _ balancer.Picker = (*p2cPicker)(nil)

func (p *p2cPicker) cost(e *ready) float64 {
	l, ok := e.stats.latency()
	if !ok {
		l = p.cold
	}
	return l * float64(e.stats.inflight.Load()+1)
}

// Pick compares two distinct random endpoints and takes the cheaper, unless
// the other has not been picked for forceGap: then it takes that one, once,
// so that its estimate is renewed whatever it was.
func (p *p2cPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	now := nanotime()
	e := &p.eps[0]
	if n := len(p.eps); n > 1 {
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := &p.eps[i], &p.eps[j]
		if p.cost(b) < p.cost(a) {
			a, b = b, a
		}
		e = a
		if last := b.stats.picked.Load(); now-last > int64(forceGap) && b.stats.picked.CompareAndSwap(last, now) {
			e = b
		}
	}
	res, err := e.picker.Pick(info)
	if err != nil {
		return res, err
	}
	e.stats.picked.Store(now)
	res.Done = startCall(e.stats, now, p.kinds.pickKind(info), res.Done)
	return res, nil
}
