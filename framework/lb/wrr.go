package lb

import (
	"container/heap"
	"math/rand/v2"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
)

// WeightedRoundRobin is the name of the smooth weighted round-robin policy.
// It reads the "svckit.weight" attribute; grpc-go's own
// "weighted_round_robin" balances on server-reported load instead.
const WeightedRoundRobin = "svckit_weighted_round_robin"

// maxSchedule bounds the precomputed schedule; larger weight sums are
// scaled down (each weight stays at least 1).
const maxSchedule = 1 << 16

func init() {
	balancer.Register(builder{name: WeightedRoundRobin, newPolicy: func() policy { return wrrPolicy{} }})
}

type wrrPolicy struct{}

// picker precomputes one period of an earliest-deadline-first schedule:
// endpoint i appears w_i times, spread evenly (1,2,3 gives c b c a c b),
// so a Pick is one atomic add and an index.
func (wrrPolicy) picker(eps []ready) balancer.Picker {
	ws := make([]uint64, len(eps))
	var sum uint64
	for i, e := range eps {
		ws[i] = uint64(weightOf(e.endpoint))
		sum += ws[i]
	}
	if sum > maxSchedule {
		var s2 uint64
		for i := range ws {
			ws[i] = max(1, ws[i]*maxSchedule/sum)
			s2 += ws[i]
		}
		sum = s2
	}
	h := make(edfHeap, len(eps))
	for i := range eps {
		h[i] = edfEntry{deadline: 1 / float64(ws[i]), step: 1 / float64(ws[i]), index: i}
	}
	heap.Init(&h)
	sched := make([]uint32, sum)
	for k := range sched {
		e := &h[0]
		sched[k] = uint32(e.index)
		e.deadline += e.step
		heap.Fix(&h, 0)
	}
	p := &wrrPicker{eps: eps, sched: sched}
	p.next.Store(rand.Uint32())
	return p
}

type wrrPicker struct {
	eps   []ready
	sched []uint32
	next  atomic.Uint32
}

var _ balancer.Picker = (*wrrPicker)(nil)

func (p *wrrPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	i := p.sched[p.next.Add(1)%uint32(len(p.sched))]
	return p.eps[i].picker.Pick(info)
}

type edfEntry struct {
	deadline, step float64
	index          int
}

type edfHeap []edfEntry

func (h edfHeap) Len() int { return len(h) }
func (h edfHeap) Less(i, j int) bool {
	if h[i].deadline != h[j].deadline {
		return h[i].deadline < h[j].deadline
	}
	return h[i].index < h[j].index
}
func (h edfHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *edfHeap) Push(x any)   { *h = append(*h, x.(edfEntry)) }
func (h *edfHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
