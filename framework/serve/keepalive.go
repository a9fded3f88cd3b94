package serve

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// The keepalive of svckit's clients: a client pings a connection idle for
// ClientPingInterval (keepalive.ClientParameters.Time, with
// PermitWithoutStream) and closes it if the ack takes longer than
// ClientPingTimeout. Keepalive's servers accept pings twice as often.
const (
	ClientPingInterval = 10 * time.Second
	ClientPingTimeout  = 5 * time.Second
)

// The server side of the policy.
const (
	// minClientPing is the most often a client may ping: half its interval,
	// so that no svckit client is ever told "too_many_pings".
	minClientPing = ClientPingInterval / 2
	// pingInterval and pingTimeout: the server pings a connection idle for
	// 30s and closes it if the ack takes over 10s, so that the connections
	// of vanished clients do not pile up.
	pingInterval = 30 * time.Second
	pingTimeout  = 10 * time.Second
	// maxConnectionAge recycles connections after about 30 minutes (gRPC
	// adds ±10 % jitter) so that clients rebalance onto servers started
	// since, with maxConnectionAgeGrace for the calls in flight to end.
	maxConnectionAge      = 30 * time.Minute
	maxConnectionAgeGrace = 5 * time.Minute
)

// Keepalive returns the server options of svckit's keepalive policy:
// clients may ping every 5s, even without a call in flight; the server
// pings connections idle for 30s and closes those whose ack takes over 10s;
// and it recycles every connection after about 30 minutes, leaving the
// calls in flight 5 minutes to end. Options given after these win.
func Keepalive() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minClientPing, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  pingInterval,
			Timeout:               pingTimeout,
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionAgeGrace,
		}),
	}
}
