// Package etcdtest starts a real etcd server in-process, for tests, demos and
// local development.
//
// A Cluster is one or more members of go.etcd.io/etcd/server/v3/embed, each
// listening on 127.0.0.1 with ports picked at start and a data directory of its
// own. Members can be stopped, restarted on the same ports with the same data,
// wiped (restarted empty, as after a data loss) and asked who leads. Start and
// StartCluster tie a cluster to a test with t.Cleanup; New and Close serve code
// that is not a test, such as `svckit etcd` and the demo.
//
// Options.TLS makes the members serve clients over TLS only, optionally
// requiring client certificates; GenerateCerts writes a development CA, a
// server certificate for 127.0.0.1 and localhost and a client certificate,
// and StartTLS ties a mutual-TLS-only member to a test.
//
// It leaves out peer TLS, authentication and membership changes: tests
// that need those configure embed directly.
package etcdtest
