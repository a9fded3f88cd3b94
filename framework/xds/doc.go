// Package xds serves svckit's etcd records to any gRPC client with xDS
// support: lookaside load balancing, with no etcd access and no svckit code
// in the client.
//
// A Server watches every service under a prefix through one naming
// resolver of the whole prefix (etcd:///services), and keeps an xDS
// snapshot of it in go-control-plane's cache, served over ADS and the
// per-type discovery services. For each svckit service NAME it serves:
//
//   - a Listener NAME (an API listener, for a client's xds:///NAME), whose
//     route configuration is inline and sends every call to the cluster;
//   - a Cluster NAME, of type EDS through ADS, round robin over localities
//     (or ORCA-weighted round robin, see WithWeightedRoundRobin), with the
//     outlier detection of svckit's own balancers at a threshold of 85 %
//     (see DefaultOutlierDetection), which gRPC's xDS clients run as gRFC
//     A50 says;
//   - a ClusterLoadAssignment NAME: one locality per zone, each instance an
//     endpoint with its registration weight.
//
// Each resource type has its own version, a hash of its content, so a
// change of instances re-sends endpoints only, and a change nobody can see
// re-sends nothing.
//
// A client gets the resources it names, whatever else is registered: gRPC
// clients subscribe to listeners and clusters by name, never by wildcard.
//
// In xDS a Listener or Cluster left out of a response is deleted, and a
// client with a deleted listener fails every call ("resource … has been
// removed") until it is served again. So the Server does not take one back
// lightly: a service keeps its Listener and Cluster once seen in etcd until
// it has had no instance for a day (forgetAfter), and while it has no
// instance its ClusterLoadAssignment lists no endpoint (calls fail with
// UNAVAILABLE, and resume when an instance registers). It serves nothing
// at all until etcd has answered a first list (gRPC health says
// NOT_SERVING until then): a Server started while etcd is down leaves every
// client on the configuration it has cached, instead of telling it that
// nothing exists. And for 10s after that first list (holdUnknown) it does
// not answer a reconnecting client's first request for a Listener or
// Cluster it has not seen: the client keeps it (see holdingCache), through
// an etcd replaced by an empty one, or a service without instance that a
// restarted Server never saw.
package xds
