// Package naming registers service instances in etcd and resolves service
// names to them for gRPC.
//
// A Registrar (the server side) keeps an instance's record under a lease. It
// consumes every keepalive and watches its own key; when the lease is lost (an
// etcd outage longer than the TTL, a revoke, a delete by someone else) it
// grants a new one and puts the record again, with jittered backoff, for as
// long as it runs. Deregister deletes the key and revokes the lease in bounded
// time.
//
// A Builder (the client side) is a gRPC resolver.Builder: "etcd:///services/fs"
// resolves to every instance under "services/fs/". It lists, then watches; it
// lists again after a compaction, a failed watch or a rewound etcd; it keeps
// the last list while etcd is unreachable, skips malformed records, and puts
// each instance's metadata into endpoint attributes (the Attr constants) for
// balancers. The connections of one Builder share one watch per service.
//
// Records are the JSON of etcd's naming/endpoints package, so each side works
// with etcd's own. Balancing (package lb) and the server's lifecycle (package
// framework) are left out.
package naming
