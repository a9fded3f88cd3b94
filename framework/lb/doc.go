// Package lb provides gRPC load-balancing policies, registered by name:
//
//   - svckit_p2c_ewma (P2CEWMA, the default of client.Dial): power of two choices on a
//     peak-EWMA of latency times in-flight calls, with failures counted as
//     slow calls, so that slow or failing instances get few calls and cold
//     ones neither flood nor starve. A stream counts in flight while open
//     but its duration is no latency sample (it measures the caller's use,
//     not the instance's speed); streams are told from unary calls by the
//     method's descriptor in protoregistry.GlobalFiles, as grpc-go tells a
//     balancer only the method name. An endpoint unpicked for a second is
//     picked once, and that sample replaces its stale estimate, so no
//     sample keeps an instance out for longer than about two seconds;
//   - svckit_weighted_round_robin (WeightedRoundRobin): smooth weighted round robin by the
//     "svckit.weight" attribute of each endpoint;
//   - svckit_random (Random): uniform random;
//   - svckit_consistent_hash (ConsistentHash): a key set on the call's context with WithHashKey
//     maps to the same endpoint while the set is stable;
//   - svckit_outlier_detection (OutlierDetectionPolicy): outlier ejection
//     around another policy, named in its config.
//
// Every name carries the "svckit_" prefix, so that a program may link
// another library's balancers beside these (go-zero registers its own
// "p2c_ewma") and get each under its own name. The names before the prefix
// are not registered; Canonical maps them for callers that read a name.
//
// Every policy is built the way grpc-go builds its own (balancer/roundrobin,
// balancer/leastrequest): endpointsharding with a pickfirst child per endpoint
// and the health listener enabled, reading resolver.Endpoint attributes.
// Per-endpoint statistics live in an EndpointMap outside the picker, so that
// they survive picker rebuilds. Picks take no lock and, amortised, allocate
// nothing. With no ready endpoint the policies hand the channel's aggregate
// state through, so calls fail fast with Unavailable once nothing can connect
// (unless the call waits for ready).
//
// Each policy's config may set subsetSize: each client then keeps a stable
// subset of that many endpoints (rendezvous hashing on a per-client key), which
// changes little when endpoints come and go, and the policy runs inside it.
//
// Each policy's config may set outlierDetection (OutlierDetection: the
// fields and defaults of gRFC A50, as grpc-go's xDS outlier detection and
// Envoy's): every interval, endpoints whose calls failed far more than the
// others' are left out of the picker for a time that grows with each
// ejection in a row. It runs in the shared builder, so it works the same
// under every policy, inside the subset if any. A pick counts its call's
// result with an atomic add and no allocation; a sweeper goroutine per
// balancer, started when the config turns ejection on and stopped by
// Close, ejects and lets back in. Each ejection and return is logged at
// info with the endpoint's address, and the channel's MetricsRecorder
// (grpc.WithStatsHandler) gets the svckit.lb.ejections counter and the
// svckit.lb.ejected gauge. Around any other policy (grpc-go's round_robin,
// say), svckit_outlier_detection (OutlierDetectionPolicy) runs the same
// ejection, picking again when the child picks an ejected endpoint.
//
// lb does not import naming: the two meet only in the attribute keys, which
// are plain strings.
package lb
