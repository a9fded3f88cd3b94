package lb

// Canonical returns the registered name of the policy that name denotes,
// and whether name is one of the names svckit's policies had before they
// took the "svckit_" prefix: "p2c_ewma", "random" and "consistent_hash" map
// to P2CEWMA, Random and ConsistentHash; any other name is returned as is.
//
// The old names are not registered with gRPC: "p2c_ewma" is also go-zero's
// p2c balancer, and a name registered twice in grpc-go's global registry
// silently means whichever init ran last. Canonical lets the places where
// svckit itself reads a policy name (client.WithBalancer,
// svckit proxy --balancer) keep accepting them, with a deprecation warning;
// a service config written by hand must use the new names.
func Canonical(name string) (policy string, deprecated bool) {
	switch name {
	case "p2c_ewma":
		return P2CEWMA, true
	case "random":
		return Random, true
	case "consistent_hash":
		return ConsistentHash, true
	}
	return name, false
}
