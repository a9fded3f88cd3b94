package xds

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cswrrv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/svckit/svckit/framework/lb"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/serve"
)

// nodeGroup is the one cache key every client shares: what the server
// serves does not depend on who asks.
const nodeGroup = "svckit"

// holdUnknown is how long after its first snapshot the server holds the
// first request of a client that has a Listener or Cluster this server has
// not seen (see holdingCache): one default lease TTL (framework's 10s),
// time for instances to register again in an etcd replaced by an empty
// one. It must stay under grpc-go's 15s does-not-exist timer: while a
// stream's first request is held, its later requests are held too, even
// for a resource this server has, and a channel dialled meanwhile would
// fail with "resource does not exist" once that timer fires. After it, a
// client asking for a service this server does not know is told it does
// not exist.
const holdUnknown = 10 * time.Second

// forgetAfter is how long a service keeps its Listener and Cluster without
// any instance: then the server forgets it, so that names seen once do not
// pile up for the life of the server. Checked every forgetCheck.
const (
	forgetAfter = 24 * time.Hour
	forgetCheck = time.Hour
)

type options struct {
	prefix  string
	log     *slog.Logger
	wrr     bool
	outlier *lb.OutlierDetection // nil: none
}

// Option configures a Server.
type Option func(*options)

// WithPrefix sets the etcd key prefix of the services; default "services/".
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithLogger sets the logger; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithWeightedRoundRobin makes clusters ask clients for ORCA-weighted round
// robin (grpc-go's weighted_round_robin inside weighted localities), which
// balances on the load servers report (framework.WithORCA) instead of
// taking turns.
func WithWeightedRoundRobin() Option { return func(o *options) { o.wrr = true } }

// WithOutlierDetection sets the outlier detection of every Cluster, which
// gRPC's xDS clients run as gRFC A50 says; default DefaultOutlierDetection.
func WithOutlierDetection(od lb.OutlierDetection) Option {
	return func(o *options) { o.outlier = new(od.Clone()) }
}

// DefaultOutlierDetection is the outlier detection of the Clusters by
// default: the thick client's (lb.DefaultOutlierDetection) with gRFC A50's
// failure-percentage threshold of 85 %, not 25 %. A gRPC xDS client counts
// every error as a failure, where svckit's balancers count only an
// instance's faults: an API answering NOT_FOUND to a third of its calls,
// or an instance shedding a quarter of its calls with RESOURCE_EXHAUSTED,
// would get its instances ejected at 25 %.
func DefaultOutlierDetection() lb.OutlierDetection {
	od := lb.DefaultOutlierDetection()
	od.FailurePercentageEjection.Threshold = 85
	return od
}

// WithoutOutlierDetection serves Clusters without outlier detection.
func WithoutOutlierDetection() Option { return func(o *options) { o.outlier = nil } }

// Server is an xDS management server fed by etcd.
type Server struct {
	b     *naming.Builder
	opts  options
	cache *holdingCache
	xds   serverv3.Server
	ctx   context.Context
	stop  context.CancelFunc

	states  chan resolver.State // latest state only
	streams atomic.Int64        // open xDS streams

	ready chan struct{} // closed at the first snapshot

	// holdUnknown, forgetAfter and forgetCheck; tests shorten them.
	hold, forget, check time.Duration

	mu       sync.Mutex
	services map[string][]Instance
	lastSeen map[string]time.Time // when each service last had an instance
	versions [3]string            // cluster, endpoint, listener
	updates  int
}

// Instance is one endpoint as served.
type Instance struct {
	Addr   string
	Zone   string
	Weight uint32
}

// New returns a Server that reads etcd through b. Register it on a gRPC
// server and Run it.
func New(b *naming.Builder, opts ...Option) (*Server, error) {
	o := options{prefix: naming.DefaultPrefix, log: slog.Default(), outlier: new(DefaultOutlierDetection())}
	for _, opt := range opts {
		opt(&o)
	}
	if err := naming.ValidatePrefix(o.prefix); err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	if o.outlier != nil {
		if err := o.outlier.Validate(); err != nil {
			return nil, fmt.Errorf("xds: outlier detection: %w", err)
		}
	}
	o.log = o.log.With("component", "xds")
	s := &Server{
		b:        b,
		opts:     o,
		states:   make(chan resolver.State, 1),
		services: map[string][]Instance{},
		lastSeen: map[string]time.Time{},
		ready:    make(chan struct{}),
		hold:     holdUnknown,
		forget:   forgetAfter,
		check:    forgetCheck,
	}
	// Not ADS mode: go-control-plane's ADS mode answers a request only when
	// it names every resource of the type in the snapshot, and a gRPC client
	// names only the services it uses. Otherwise the cache answers with the
	// resources requested, which is what gRPC expects; gRPC does not need
	// ADS's ordering of responses across types.
	s.cache = newHoldingCache(cachev3.NewSnapshotCache(false, constantHash{}, logger{o.log}))
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.xds = serverv3.NewServer(s.ctx, s.cache, serverv3.CallbackFuncs{
		StreamOpenFunc:        func(context.Context, int64, string) error { s.streams.Add(1); return nil },
		StreamClosedFunc:      func(int64, *corev3.Node) { s.streams.Add(-1) },
		DeltaStreamOpenFunc:   func(context.Context, int64, string) error { s.streams.Add(1); return nil },
		DeltaStreamClosedFunc: func(int64, *corev3.Node) { s.streams.Add(-1) },
	})
	return s, nil
}

// Register serves ADS and the listener, route, cluster and endpoint
// discovery services on g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
}

// Serve serves the discovery services and gRPC health on lis, and watches
// etcd (Run) until ctx ends. The server has svckit's keepalive policy (see
// serve.Keepalive: a client's connection is recycled after about 30
// minutes, and the client reconnects, to whichever server its target
// resolves to then), then opts. Health answers NOT_SERVING until the first
// snapshot (etcd has answered a list), then SERVING: a server that serves
// nothing does not look healthy. xDS streams never end by themselves, so it
// then stops at once: clients keep their last configuration and reconnect.
// It returns the error of the watch or of the listener, if either fails.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(append(serve.Keepalive(), opts...)...)
	s.Register(g)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served, ran := make(chan error, 1), make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	go func() { ran <- s.Run(ctx) }()
	ready := s.Ready()
	for {
		select {
		case <-ready:
			ready = nil
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			continue
		case err := <-ran:
			cancel()
			_ = serve.Stop(ctx, g) // ctx is done: at once
			<-served
			return err
		case err := <-served:
			cancel()
			_ = serve.Stop(ctx, g)
			if rerr := <-ran; err == nil {
				err = rerr
			}
			return err
		}
	}
}

// Ready returns a channel closed once the server has a first snapshot to
// serve: etcd has answered a list.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run watches etcd and updates the snapshot until ctx ends. It returns an
// error only if the watch cannot start.
func (s *Server) Run(ctx context.Context) error {
	defer s.stop()
	target := resolver.Target{URL: url.URL{Scheme: naming.Scheme, Path: "/" + s.opts.prefix}}
	r, err := s.b.Build(target, (*stateSink)(s), resolver.BuildOptions{})
	if err != nil {
		return fmt.Errorf("xds: watch %s: %w", s.opts.prefix, err)
	}
	defer r.Close()
	// The resolver pushes a state only once etcd has answered a list: until
	// then the cache holds no snapshot and answers nobody.
	var (
		last    *resolver.State
		hold    *time.Timer // from the first snapshot
		holdEnd <-chan time.Time
	)
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	check := time.NewTicker(s.check)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case st := <-s.states:
			last = &st
			if err := s.apply(st); err != nil {
				s.opts.log.Error("snapshot not updated", "err", err)
				continue
			}
			if hold == nil {
				hold = time.NewTimer(s.hold)
				holdEnd = hold.C
			}
		case <-holdEnd:
			holdEnd = nil
			n := s.cache.holding()
			if err := s.cache.release(); err != nil {
				s.opts.log.Error("held requests not answered", "err", err)
			} else if n > 0 {
				s.opts.log.Info("answering requests held for services not seen in etcd", "requests", n, "hold", s.hold)
			}
		case <-check.C:
			if last != nil {
				if err := s.apply(*last); err != nil {
					s.opts.log.Error("snapshot not updated", "err", err)
				}
			}
		}
	}
}

// Services returns the instances of every service as last served: a
// service without instance, once seen, has an empty list.
func (s *Server) Services() map[string][]Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]Instance, len(s.services))
	for k, v := range s.services {
		out[k] = slices.Clone(v)
	}
	return out
}

// Streams returns the number of xDS streams open on the server: the clients
// connected, whatever they were served.
func (s *Server) Streams() int { return int(s.streams.Load()) }

// Versions returns the versions of the cluster, endpoint and listener
// resources last served.
func (s *Server) Versions() (cds, eds, lds string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versions[0], s.versions[1], s.versions[2]
}

// apply turns a resolver state of the whole prefix into a snapshot.
func (s *Server) apply(st resolver.State) error {
	services := s.instances(st)
	lastSeen := s.forgetIdle(services, time.Now())
	clusters, endpoints, listeners, err := s.resources(services)
	if err != nil {
		return err
	}
	versions := [3]string{version(clusters), version(endpoints), version(listeners)}
	s.mu.Lock()
	same := versions == s.versions && s.updates > 0
	if same {
		s.lastSeen = lastSeen
	}
	s.mu.Unlock()
	if same {
		return nil
	}
	snap := &cachev3.Snapshot{}
	snap.Resources[types.Cluster] = cachev3.NewResources(versions[0], clusters)
	snap.Resources[types.Endpoint] = cachev3.NewResources(versions[1], endpoints)
	snap.Resources[types.Listener] = cachev3.NewResources(versions[2], listeners)
	snap.Resources[types.Route] = cachev3.NewResources("0", nil)
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("xds: inconsistent snapshot: %w", err)
	}
	if err := s.cache.SetSnapshot(s.ctx, nodeGroup, snap); err != nil {
		return fmt.Errorf("xds: set snapshot: %w", err)
	}
	s.mu.Lock()
	s.services, s.versions, s.lastSeen = services, versions, lastSeen
	if s.updates == 0 {
		close(s.ready)
	}
	s.updates++
	s.mu.Unlock()
	s.opts.log.Info("snapshot", "services", len(services), "endpoints", len(st.Endpoints),
		"cds", versions[0], "eds", versions[1], "lds", versions[2])
	return nil
}

// instances groups the endpoints of st by service. Every service served
// so far is in the map, without instances if st has none: once seen, a
// service is served until forgotten.
func (s *Server) instances(st resolver.State) map[string][]Instance {
	services := map[string][]Instance{}
	s.mu.Lock()
	for name := range s.services {
		services[name] = nil
	}
	s.mu.Unlock()
	for _, ep := range st.Endpoints {
		key, ok := naming.KeyOf(ep)
		if !ok || len(ep.Addresses) == 0 {
			continue
		}
		svc, err := naming.ServiceOfKey(s.opts.prefix, key)
		if err != nil {
			s.opts.log.Debug("skip key", "key", key, "err", err)
			continue
		}
		in := Instance{Addr: ep.Addresses[0].Addr, Weight: 1}
		if md, ok := naming.MetadataOf(ep); ok {
			in.Zone = md.Zone
			in.Weight = max(md.Weight, 1)
		}
		services[svc] = append(services[svc], in)
	}
	return services
}

// forgetIdle deletes from services those without an instance for the
// forget period, and returns when each remaining one last had an
// instance, as of now. It does not change the Server.
func (s *Server) forgetIdle(services map[string][]Instance, now time.Time) map[string]time.Time {
	s.mu.Lock()
	lastSeen := maps.Clone(s.lastSeen)
	s.mu.Unlock()
	for name, ins := range services {
		switch {
		case len(ins) > 0:
			lastSeen[name] = now
		case now.Sub(lastSeen[name]) >= s.forget:
			delete(services, name)
			delete(lastSeen, name)
			s.opts.log.Info("forgetting a service without instance", "service", name, "for", s.forget)
		}
	}
	return lastSeen
}

// resources returns the xDS resources of services, in the order of their
// names.
func (s *Server) resources(services map[string][]Instance) (clusters, endpoints, listeners []types.Resource, _ error) {
	for _, name := range slices.Sorted(maps.Keys(services)) {
		cla, err := loadAssignment(name, services[name])
		if err != nil {
			return nil, nil, nil, err
		}
		l, err := listener(name)
		if err != nil {
			return nil, nil, nil, err
		}
		c, err := cluster(name, s.opts.wrr, s.opts.outlier)
		if err != nil {
			return nil, nil, nil, err
		}
		clusters, endpoints, listeners = append(clusters, c), append(endpoints, cla), append(listeners, l)
	}
	return clusters, endpoints, listeners, nil
}

// version hashes resources into a version string.
func version(rs []types.Resource) string {
	h := fnv.New64a()
	m := proto.MarshalOptions{Deterministic: true}
	for _, r := range rs {
		b, _ := m.Marshal(r)
		_, _ = h.Write(b)
		_, _ = h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func loadAssignment(name string, ins []Instance) (*endpointv3.ClusterLoadAssignment, error) {
	byZone := map[string][]*endpointv3.LbEndpoint{}
	weights := map[string]uint32{}
	slices.SortFunc(ins, func(a, b Instance) int {
		if a.Addr < b.Addr {
			return -1
		}
		if a.Addr > b.Addr {
			return 1
		}
		return 0
	})
	for _, in := range ins {
		host, p, err := net.SplitHostPort(in.Addr)
		if err != nil {
			return nil, fmt.Errorf("xds: %s: address %q: %w", name, in.Addr, err)
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("xds: %s: port of %q: %w", name, in.Addr, err)
		}
		byZone[in.Zone] = append(byZone[in.Zone], &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Protocol: corev3.SocketAddress_TCP, Address: host,
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
				}}},
			}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(in.Weight),
		})
		weights[in.Zone] += in.Weight
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, zone := range slices.Sorted(maps.Keys(byZone)) {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: zone},
			LbEndpoints:         byZone[zone],
			LoadBalancingWeight: wrapperspb.UInt32(weights[zone]), // a locality without weight is ignored
		})
	}
	return cla, nil
}

func cluster(name string, wrr bool, od *lb.OutlierDetection) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
		LbPolicy:         clusterv3.Cluster_ROUND_ROBIN,
		OutlierDetection: outlierDetection(od),
	}
	if wrr {
		// Weights count 2s after an instance's first report (gRPC's
		// default is 10s) and are recomputed every second.
		inner, err := anypb.New(&cswrrv3.ClientSideWeightedRoundRobin{
			BlackoutPeriod:     durationpb.New(2 * time.Second),
			WeightUpdatePeriod: durationpb.New(time.Second),
		})
		if err != nil {
			return nil, err
		}
		outer, err := anypb.New(&wrrlocalityv3.WrrLocality{EndpointPickingPolicy: &clusterv3.LoadBalancingPolicy{
			Policies: []*clusterv3.LoadBalancingPolicy_Policy{{TypedExtensionConfig: &corev3.TypedExtensionConfig{
				Name: "envoy.load_balancing_policies.client_side_weighted_round_robin", TypedConfig: inner}}},
		}})
		if err != nil {
			return nil, err
		}
		c.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
			TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.wrr_locality", TypedConfig: outer}}}}
	}
	return c, nil
}

// outlierDetection is od as Envoy's OutlierDetection, read by gRPC's xDS
// client as A50 says: an ejection whose enforcing percentage is 0 is off,
// so the one od leaves unset gets 0 (Envoy's default for success rate is
// 100), as do Envoy's consecutive-error ejections, which gRPC ignores, so
// that an Envoy ejects as gRPC does. nil if od is.
func outlierDetection(od *lb.OutlierDetection) *clusterv3.OutlierDetection {
	if od == nil {
		return nil
	}
	u := wrapperspb.UInt32
	out := &clusterv3.OutlierDetection{
		Interval:                           durationpb.New(od.Interval),
		BaseEjectionTime:                   durationpb.New(od.BaseEjectionTime),
		MaxEjectionTime:                    durationpb.New(od.MaxEjectionTime),
		MaxEjectionPercent:                 u(od.MaxEjectionPercent),
		EnforcingSuccessRate:               u(0),
		EnforcingFailurePercentage:         u(0),
		EnforcingConsecutive_5Xx:           u(0),
		EnforcingConsecutiveGatewayFailure: u(0),
	}
	if sr := od.SuccessRateEjection; sr != nil {
		out.EnforcingSuccessRate = u(sr.EnforcementPercentage)
		out.SuccessRateStdevFactor = u(sr.StdevFactor)
		out.SuccessRateMinimumHosts = u(sr.MinimumHosts)
		out.SuccessRateRequestVolume = u(sr.RequestVolume)
	}
	if fp := od.FailurePercentageEjection; fp != nil {
		out.EnforcingFailurePercentage = u(fp.EnforcementPercentage)
		out.FailurePercentageThreshold = u(fp.Threshold)
		out.FailurePercentageMinimumHosts = u(fp.MinimumHosts)
		out.FailurePercentageRequestVolume = u(fp.RequestVolume)
	}
	return out
}

func listener(name string) (*listenerv3.Listener, error) {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}, nil
}

// stateSink is the resolver.ClientConn of the Server's whole-prefix
// resolver: it keeps the latest state for Run.
type stateSink Server

func (s *stateSink) UpdateState(st resolver.State) error {
	for {
		select {
		case s.states <- st:
			return nil
		default:
		}
		select { // drop the older state
		case <-s.states:
		default:
		}
	}
}

// ReportError is called only until the resolver's first list succeeds.
func (s *stateSink) ReportError(err error) {
	s.opts.log.Warn("etcd not answered yet; serving nothing", "err", err)
}

func (s *stateSink) NewAddress([]resolver.Address) {}

func (s *stateSink) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("xds: no service config")}
}

type constantHash struct{}

func (constantHash) ID(*corev3.Node) string { return nodeGroup }

// logger adapts slog to go-control-plane's logger.
type logger struct{ l *slog.Logger }

func (l logger) Debugf(f string, a ...any) { l.l.Debug(fmt.Sprintf(f, a...)) }
func (l logger) Infof(f string, a ...any)  { l.l.Debug(fmt.Sprintf(f, a...)) }
func (l logger) Warnf(f string, a ...any)  { l.l.Warn(fmt.Sprintf(f, a...)) }
func (l logger) Errorf(f string, a ...any) { l.l.Error(fmt.Sprintf(f, a...)) }
