// Package naming registers service instances in etcd and resolves service
// names to their instances for gRPC.
//
// The Registrar is the server side. It grants a lease, puts the instance's
// record under it, consumes every keepalive response, and watches its own key.
// When the lease is lost (keepalive channel closed after an etcd outage longer
// than the TTL, the lease revoked, or the key deleted by someone else) it
// grants a new lease and puts the record again, with jittered backoff, for as
// long as it runs. Deregister deletes the key and revokes the lease within a
// bounded time.
//
// The Builder is the client side: a gRPC resolver.Builder for the scheme
// "etcd", so that a target such as "etcd:///services/fileserver" resolves to
// every instance registered under "services/fileserver/". It lists, then
// watches from the next revision; it lists again after a compaction, a failed
// or closed watch, or a rewound revision (etcd replaced by an empty one); it
// keeps the last known list while etcd is unreachable; it skips malformed
// records; and it carries each instance's metadata into resolver.Endpoint
// attributes (see the Attr constants) for balancers to read. All connections
// built by one Builder share one etcd watch per service.
//
// Records use the JSON of etcd's own naming/endpoints package, so etcd's
// resolver reads what the Registrar writes and the Builder reads what etcd's
// endpoints.Manager writes.
//
// The package leaves out balancing (package lb reads the attributes) and the
// server's lifecycle (package framework decides when to register and when to
// deregister).
package naming
