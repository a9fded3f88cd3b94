package lb

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// Attribute keys read from resolver.Endpoint, as package naming sets them.
const (
	weightKey = "svckit.weight" // uint32, ≥ 1
)

// Config is the service-config of every policy in this package, e.g.
// {"loadBalancingConfig":[{"svckit_p2c_ewma":{"subsetSize":30}}]}.
type Config struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	// SubsetSize, if non-zero, keeps this client on a stable subset of that
	// many endpoints, chosen by rendezvous hashing on SubsetKey. Default 0
	// (every endpoint). Between 1 and 10,000.
	SubsetSize int `json:"subsetSize,omitempty"`
	// SubsetKey identifies the client for subsetting. Default: random per
	// balancer, so that clients spread evenly.
	SubsetKey string `json:"subsetKey,omitempty"`
}

func parseConfig(name string, js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	cfg := &Config{}
	if len(js) > 0 {
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("lb: %s config: %w", name, err)
		}
	}
	if cfg.SubsetSize < 0 || cfg.SubsetSize > 10_000 {
		return nil, fmt.Errorf("lb: %s subsetSize %d: must be 0 to 10000", name, cfg.SubsetSize)
	}
	return cfg, nil
}

// ready is one ready endpoint as a policy sees it.
type ready struct {
	endpoint resolver.Endpoint
	picker   balancer.Picker
	stats    *endpointStats
}

// policy builds the picker over the ready endpoints; it is called with the
// balancer's lock held.
type policy interface {
	picker(eps []ready) balancer.Picker
}

// endpointsPolicy is a policy that also wants every endpoint of each
// resolver update, ready or not; called with the balancer's lock held.
type endpointsPolicy interface {
	endpoints(all []resolver.Endpoint)
}

// builder is the balancer.Builder of every policy.
type builder struct {
	name      string
	newPolicy func() policy
}

func (b builder) Name() string { return b.name }

func (b builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return parseConfig(b.name, js)
}

func (b builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	sb := &shardedBalancer{
		ClientConn: cc,
		name:       b.name,
		policy:     b.newPolicy(),
		stats:      resolver.NewEndpointMap[*endpointStats](),
		subsetKey:  rand.Text(),
		log:        slog.Default().With("component", "lb", "policy", b.name, "target", opts.Target.String()),
	}
	sb.child = endpointsharding.NewBalancer(sb, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return sb
}

// shardedBalancer runs a pickfirst child per endpoint and builds its
// policy's picker over the ready ones.
type shardedBalancer struct {
	balancer.ClientConn // intercepts UpdateState from the child
	name                string
	child               balancer.Balancer
	policy              policy
	log                 *slog.Logger

	mu        sync.Mutex
	stats     *resolver.EndpointMap[*endpointStats]
	subsetKey string
}

func (b *shardedBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, _ := s.BalancerConfig.(*Config)
	if cfg == nil {
		cfg = &Config{}
	}
	eps := s.ResolverState.Endpoints
	if cfg.SubsetSize > 0 && len(eps) > cfg.SubsetSize {
		key := cfg.SubsetKey
		if key == "" {
			key = b.subsetKey
		}
		eps = subset(eps, key, cfg.SubsetSize)
	}
	// Connect in a random order, so that a new fleet of clients does not
	// start on the same endpoint.
	eps = shuffled(eps)
	b.mu.Lock()
	live := resolver.NewEndpointMap[bool]()
	for _, ep := range eps {
		live.Set(ep, true)
	}
	for ep := range b.stats.All() {
		if _, ok := live.Get(ep); !ok {
			b.stats.Delete(ep)
		}
	}
	if u, ok := b.policy.(endpointsPolicy); ok {
		u.endpoints(eps)
	}
	b.mu.Unlock()
	rs := s.ResolverState
	rs.Endpoints = eps
	rs.Addresses = nil
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(rs),
	})
}

func (b *shardedBalancer) ResolverError(err error) { b.child.ResolverError(err) }

func (b *shardedBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.log.Error("UpdateSubConnState called unexpectedly", "state", s.ConnectivityState)
}

func (b *shardedBalancer) ExitIdle() { b.child.ExitIdle() }

func (b *shardedBalancer) Close() { b.child.Close() }

// UpdateState receives the child's aggregate state and replaces its picker
// with the policy's over the ready endpoints.
func (b *shardedBalancer) UpdateState(s balancer.State) {
	children := endpointsharding.ChildStatesFromPicker(s.Picker)
	var eps []ready
	for _, c := range children {
		if c.State.ConnectivityState == connectivity.Ready {
			eps = append(eps, ready{endpoint: c.Endpoint, picker: c.State.Picker})
		}
	}
	if len(eps) == 0 {
		// Connecting, idle or failing everywhere: endpointsharding's picker
		// queues or fails fast as the aggregate state says.
		b.ClientConn.UpdateState(s)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range eps {
		st, ok := b.stats.Get(eps[i].endpoint)
		if !ok {
			st = newEndpointStats()
			b.stats.Set(eps[i].endpoint, st)
		}
		eps[i].stats = st
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: b.policy.picker(eps)})
}

// weightOf returns the endpoint's weight attribute, 1 if none.
func weightOf(ep resolver.Endpoint) uint32 {
	if w, ok := ep.Attributes.Value(weightKey).(uint32); ok && w > 0 {
		return w
	}
	return 1
}
