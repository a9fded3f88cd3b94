package proxy

import (
	"cmp"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/svckit/svckit/framework/naming"
)

// route is where calls to one gRPC service go.
type route struct {
	// service is the svckit service whose instances publish the gRPC
	// service.
	service string
	// instances is how many of its instances publish it now; 0 once all
	// are gone (the route is kept: the service is known, not unknown).
	instances int
}

// routes is the routing table, gRPC service → svckit service. It is the
// resolver.ClientConn of one resolver watching the whole key prefix: every
// endpoint carries its etcd key (the svckit service) and its metadata (the
// gRPC services it serves).
type routes struct {
	prefix string
	log    *slog.Logger

	mu        sync.RWMutex
	table     map[string]route
	ambiguous map[string]string // gRPC service → the services that publish it, as last logged

	synced chan struct{} // closed at the first update
	once   sync.Once
}

var _ resolver.ClientConn = (*routes)(nil)

func newRoutes(prefix string, log *slog.Logger) *routes {
	return &routes{prefix: prefix, log: log, table: map[string]route{}, ambiguous: map[string]string{},
		synced: make(chan struct{})}
}

// lookup returns the route of a gRPC service, and whether any instance has
// published it since the proxy started.
func (r *routes) lookup(grpcService string) (route, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rt, ok := r.table[grpcService]
	return rt, ok
}

// snapshot returns the table as gRPC service → svckit service, for the
// routes with at least one instance.
func (r *routes) snapshot() map[string]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]string, len(r.table))
	for g, rt := range r.table {
		if rt.instances > 0 {
			out[g] = rt.service
		}
	}
	return out
}

// UpdateState rebuilds the table from the endpoints of the whole prefix.
// A gRPC service that several svckit services publish goes to the one with
// the most instances (then the first by name), with one warning per change.
func (r *routes) UpdateState(s resolver.State) error {
	counts := map[string]map[string]int{} // gRPC service → svckit service → instances
	for _, ep := range s.Endpoints {
		key, ok := naming.KeyOf(ep)
		if !ok {
			continue
		}
		svc, err := naming.ServiceOfKey(r.prefix, key)
		if err != nil {
			r.log.Warn("skip record", "key", key, "err", err)
			continue
		}
		md, _ := naming.MetadataOf(ep)
		for _, g := range md.Services {
			if counts[g] == nil {
				counts[g] = map[string]int{}
			}
			counts[g][svc]++
		}
	}

	r.mu.Lock()
	table := make(map[string]route, len(r.table)+len(counts))
	for g, rt := range r.table {
		table[g] = route{service: rt.service}
	}
	ambiguous := map[string]string{}
	for g, bySvc := range counts {
		svcs := slices.Sorted(maps.Keys(bySvc))
		best := svcs[0]
		for _, s := range svcs[1:] {
			if bySvc[s] > bySvc[best] {
				best = s
			}
		}
		table[g] = route{service: best, instances: bySvc[best]}
		if len(svcs) > 1 {
			ambiguous[g] = strings.Join(svcs, ",")
		}
	}
	var warn []string
	for g, svcs := range ambiguous {
		if r.ambiguous[g] != svcs {
			warn = append(warn, g)
		}
	}
	r.table, r.ambiguous = table, ambiguous
	r.mu.Unlock()

	slices.SortFunc(warn, cmp.Compare)
	for _, g := range warn {
		r.log.Warn("several services publish one gRPC service; routing to one", "grpc_service", g,
			"services", ambiguous[g], "route", table[g].service)
	}
	r.once.Do(func() { close(r.synced) })
	return nil
}

// ReportError logs a resolver error; the table keeps its routes.
func (r *routes) ReportError(err error) {
	r.log.Warn("route watch", "prefix", r.prefix, "err", err)
}

// NewAddress is unused: the resolver sends whole states.
func (r *routes) NewAddress([]resolver.Address) {}

// ParseServiceConfig refuses: the route watch carries no service config.
func (r *routes) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("proxy: no service config on the route watch")}
}
