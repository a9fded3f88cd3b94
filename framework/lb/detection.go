package lb

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	estats "google.golang.org/grpc/experimental/stats"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"
)

// OutlierDetectionPolicy is the registered name of the policy that runs
// outlier ejection around another policy, grpc-go's round_robin or
// weighted_round_robin for instance: its config is an OutlierDetection's
// with a childPolicy, as grpc-go's xDS outlier_detection_experimental's:
//
//	{"svckit_outlier_detection":{"failurePercentageEjection":{…},"childPolicy":[{"round_robin":{}}]}}
//
// Unlike grpc-go's, it leaves the child's SubConns alone (grpc-go's wraps
// each, to tell the child an ejected one failed): it counts the calls of
// each SubConn its child creates, and when the child's picker picks an
// ejected one it picks again, up to repicks times, then takes what it got.
// So an ejected endpoint gets no call from a child that picks another on
// each pick (round_robin, weighted_round_robin, least_request), and still
// gets its calls from one that keeps picking it (pick_first, ring_hash for
// a key). svckit's own policies take an outlierDetection of their own,
// which leaves ejected endpoints out of their pickers: use that for them.
const OutlierDetectionPolicy = "svckit_outlier_detection"

// repicks bounds the picks again of a detection picker that picked an
// ejected SubConn: with at most maxEjectionPercent of the endpoints out, a
// child that takes turns or draws at random rarely picks five of them in a
// row.
const repicks = 4

func init() {
	balancer.Register(detectionBuilder{})
}

// detectionConfig is the config of OutlierDetectionPolicy.
type detectionConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	OutlierDetection
	child       string
	childConfig serviceconfig.LoadBalancingConfig
}

type detectionBuilder struct{}

func (detectionBuilder) Name() string { return OutlierDetectionPolicy }

// ParseConfig reads the outlier detection, filling A50's defaults, then
// the first policy of childPolicy that is registered, with its own
// ParseConfig if it has one.
func (detectionBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	cfg := &detectionConfig{}
	var children struct {
		ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
	}
	if err := json.Unmarshal(js, &cfg.OutlierDetection); err != nil {
		return nil, fmt.Errorf("lb: %s config: %w", OutlierDetectionPolicy, err)
	}
	if err := json.Unmarshal(js, &children); err != nil {
		return nil, fmt.Errorf("lb: %s childPolicy: %w", OutlierDetectionPolicy, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lb: %s: %w", OutlierDetectionPolicy, err)
	}
	for _, c := range children.ChildPolicy {
		for name, raw := range c {
			bb := balancer.Get(name)
			if bb == nil || len(c) != 1 {
				continue
			}
			if p, ok := bb.(balancer.ConfigParser); ok {
				cc, err := p.ParseConfig(raw)
				if err != nil {
					return nil, fmt.Errorf("lb: %s childPolicy %s: %w", OutlierDetectionPolicy, name, err)
				}
				cfg.childConfig = cc
			}
			cfg.child = name
			return cfg, nil
		}
	}
	return nil, fmt.Errorf("lb: %s childPolicy: no registered policy in %s", OutlierDetectionPolicy, js)
}

func (detectionBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &detectionBalancer{ClientConn: cc, opts: opts}
	b.ejector = ejector{
		name:     OutlierDetectionPolicy,
		target:   opts.Target.String(),
		log:      slog.Default().With("component", "lb", "policy", OutlierDetectionPolicy, "target", opts.Target.String()),
		recorder: func() estats.MetricsRecorder { return cc.MetricsRecorder() },
		rebuild:  b.publish,
		wake:     make(chan struct{}, 1),
		stats:    resolver.NewEndpointMap[*endpointStats](),
	}
	b.subConns.Store(&map[balancer.SubConn]*endpointStats{})
	return b
}

// detectionBalancer runs its child policy as the channel would, and
// counts the calls of each SubConn the child creates toward the endpoint
// of its address.
type detectionBalancer struct {
	balancer.ClientConn // intercepts NewSubConn and UpdateState from the child
	ejector
	opts balancer.BuildOptions

	// subConns maps each of the child's SubConns to its endpoint's stats:
	// copied on write under mu, read by pickers without a lock.
	subConns atomic.Pointer[map[balancer.SubConn]*endpointStats]

	// Under mu, but child, which only the channel's calls use.
	child      balancer.Balancer
	childName  string
	childState balancer.State
	byAddr     map[string]*endpointStats
}

func (b *detectionBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*detectionConfig)
	if !ok {
		return fmt.Errorf("lb: %s: config of type %T", OutlierDetectionPolicy, s.BalancerConfig)
	}
	b.mu.Lock()
	live := resolver.NewEndpointMap[bool]()
	for _, ep := range s.ResolverState.Endpoints {
		live.Set(ep, true)
		if _, ok := b.stats.Get(ep); !ok {
			b.stats.Set(ep, newEndpointStats())
		}
	}
	b.byAddr = map[string]*endpointStats{}
	for ep, st := range b.stats.All() {
		if _, ok := live.Get(ep); !ok {
			b.stats.Delete(ep)
			continue
		}
		for _, a := range ep.Addresses {
			b.byAddr[a.Addr] = st
		}
	}
	if b.setOutlier(&cfg.OutlierDetection) {
		b.publish()
	}
	b.mu.Unlock()
	if cfg.child != b.childName {
		if b.child != nil {
			b.child.Close()
		}
		b.child, b.childName = balancer.Get(cfg.child).Build(b, b.opts), cfg.child
	}
	return b.child.UpdateClientConnState(balancer.ClientConnState{ResolverState: s.ResolverState, BalancerConfig: cfg.childConfig})
}

func (b *detectionBalancer) ResolverError(err error) {
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

func (b *detectionBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.log.Error("UpdateSubConnState called unexpectedly", "state", s.ConnectivityState)
}

func (b *detectionBalancer) ExitIdle() {
	if b.child != nil {
		b.child.ExitIdle()
	}
}

// Close stops the sweeper, then closes the child.
func (b *detectionBalancer) Close() {
	b.ejector.close()
	if b.child != nil {
		b.child.Close()
	}
}

// NewSubConn creates the child's SubConn and maps it to the stats of its
// first address's endpoint, until it shuts down.
func (b *detectionBalancer) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	// mu is held while the channel creates the SubConn, as grpc-go's
	// outlier detection does: the channel calls the listener later, from
	// its serializer, so the listener sees sc set.
	b.mu.Lock()
	defer b.mu.Unlock()
	var sc balancer.SubConn
	listener := opts.StateListener
	opts.StateListener = func(s balancer.SubConnState) {
		if s.ConnectivityState == connectivity.Shutdown {
			b.mapSubConn(sc, nil)
		}
		if listener != nil {
			listener(s)
		}
	}
	//lint:ignore SA1019 the child's own call, passed through to count its calls.
	sc, err := b.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	if len(addrs) > 0 {
		if st, ok := b.byAddr[addrs[0].Addr]; ok {
			b.mapSubConnLocked(sc, st)
		}
	}
	return sc, nil
}

// mapSubConn maps sc to st, or forgets it if st is nil.
func (b *detectionBalancer) mapSubConn(sc balancer.SubConn, st *endpointStats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mapSubConnLocked(sc, st)
}

func (b *detectionBalancer) mapSubConnLocked(sc balancer.SubConn, st *endpointStats) {
	m := maps.Clone(*b.subConns.Load())
	if st == nil {
		delete(m, sc)
	} else {
		m[sc] = st
	}
	b.subConns.Store(&m)
}

// UpdateState receives the child's state and hands the channel its picker
// wrapped in a detection picker.
func (b *detectionBalancer) UpdateState(s balancer.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.childState = s
	b.publish()
}

// publish hands the channel the child's latest state, its picker wrapped
// to count calls and pick again past ejected SubConns while outlier
// detection is on. Called with mu held.
func (b *detectionBalancer) publish() {
	s := b.childState
	if b.closed || s.Picker == nil {
		return
	}
	if b.outlier.enabled() {
		ejected := map[balancer.SubConn]bool{}
		for sc, st := range *b.subConns.Load() {
			if !st.ejectedAt.IsZero() {
				ejected[sc] = true
			}
		}
		s.Picker = &detectionPicker{child: s.Picker, subConns: &b.subConns, ejected: ejected}
	}
	b.ClientConn.UpdateState(s)
}

// detectionPicker counts each call's result toward its SubConn's
// endpoint, and picks again when its child picks an ejected SubConn.
type detectionPicker struct {
	child    balancer.Picker
	subConns *atomic.Pointer[map[balancer.SubConn]*endpointStats]
	ejected  map[balancer.SubConn]bool
}

var _ balancer.Picker = (*detectionPicker)(nil)

// errEjected is what a child policy is told of a pick of an ejected
// connection, which is not used.
var errEjected = status.Error(codes.Unavailable, "lb: connection ejected as an outlier")

func (p *detectionPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	for try := 0; ; try++ {
		res, err := p.child.Pick(info)
		if err != nil {
			return res, err
		}
		if try < repicks && p.ejected[res.SubConn] {
			if res.Done != nil {
				// The child's call that is not made, told as failed: told
				// as done (a success in no time), a latency-steered child
				// such as svckit_p2c_ewma took the ejected instance for the
				// fastest and picked it again and again, past the re-picks.
				res.Done(balancer.DoneInfo{Err: errEjected})
			}
			continue
		}
		if st := (*p.subConns.Load())[res.SubConn]; st != nil {
			res.Done = st.counted(res.Done)
		}
		return res, nil
	}
}
