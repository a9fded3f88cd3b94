package lb

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
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
	// OutlierDetection, if set with one of its ejections, leaves endpoints
	// whose calls fail out of the picker for a while (within the subset,
	// if any). Default unset: no ejection.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
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
	if cfg.OutlierDetection != nil {
		if err := cfg.OutlierDetection.Validate(); err != nil {
			return nil, fmt.Errorf("lb: %s outlierDetection: %w", name, err)
		}
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
	sb := &shardedBalancer{ClientConn: cc, policy: b.newPolicy(), subsetKey: rand.Text()}
	sb.ejector = ejector{
		name:     b.name,
		target:   opts.Target.String(),
		log:      slog.Default().With("component", "lb", "policy", b.name, "target", opts.Target.String()),
		recorder: func() estats.MetricsRecorder { return cc.MetricsRecorder() },
		rebuild:  sb.publish,
		wake:     make(chan struct{}, 1),
		stats:    resolver.NewEndpointMap[*endpointStats](),
	}
	sb.child = endpointsharding.NewBalancer(sb, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return sb
}

// shardedBalancer runs a pickfirst child per endpoint and builds its
// policy's picker over the ready ones, less those its ejector ejected.
type shardedBalancer struct {
	balancer.ClientConn // intercepts UpdateState from the child
	ejector             // the endpoints' stats and mu
	child               balancer.Balancer
	policy              policy

	// Under mu.
	subsetKey  string
	childState balancer.State // the child's latest, to build pickers again on ejections
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
	// Every endpoint has its stats from the start, ready or not, as outlier
	// detection counts them all toward MaxEjectionPercent.
	for _, ep := range eps {
		if _, ok := b.stats.Get(ep); !ok {
			b.stats.Set(ep, newEndpointStats())
		}
	}
	if u, ok := b.policy.(endpointsPolicy); ok {
		u.endpoints(eps)
	}
	if b.setOutlier(cfg.OutlierDetection) {
		b.publish()
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

// Close stops the outlier sweeper, waits for it, then closes the child.
func (b *shardedBalancer) Close() {
	b.ejector.close()
	b.child.Close()
}

// UpdateState receives the child's aggregate state and replaces its picker
// with the policy's over the ready endpoints.
func (b *shardedBalancer) UpdateState(s balancer.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.childState = s
	b.publish()
}

// publish hands the channel the policy's picker over the ready endpoints
// of the child's latest state, less the ejected ones, unless every one is.
// Called with mu held, by the child's updates and by outlier sweeps.
func (b *shardedBalancer) publish() {
	s := b.childState
	if b.closed || s.Picker == nil {
		return
	}
	var eps []ready
	ejected := 0
	for _, c := range endpointsharding.ChildStatesFromPicker(s.Picker) {
		if c.State.ConnectivityState != connectivity.Ready {
			continue
		}
		st, ok := b.stats.Get(c.Endpoint)
		if !ok {
			st = newEndpointStats()
			b.stats.Set(c.Endpoint, st)
		}
		if !st.ejectedAt.IsZero() {
			ejected++
		}
		eps = append(eps, ready{endpoint: c.Endpoint, picker: c.State.Picker, stats: st})
	}
	if len(eps) == 0 {
		// Connecting, idle or failing everywhere: endpointsharding's picker
		// queues or fails fast as the aggregate state says.
		b.ClientConn.UpdateState(s)
		return
	}
	if ejected > 0 && ejected < len(eps) {
		eps = slices.DeleteFunc(eps, func(r ready) bool { return !r.stats.ejectedAt.IsZero() })
	}
	if b.outlier.enabled() {
		for i := range eps {
			eps[i].picker = &countingPicker{child: eps[i].picker, stats: eps[i].stats}
		}
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
