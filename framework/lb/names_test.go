package lb_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/balancer"

	"github.com/svckit/svckit/framework/lb"
)

// TestNamesArePrefixed checks that each policy is registered under its
// svckit_ name only: the unprefixed names are left free for other
// libraries (go-zero registers "p2c_ewma").
func TestNamesArePrefixed(t *testing.T) {
	for _, tc := range []struct{ old, want string }{
		{"p2c_ewma", lb.P2CEWMA},
		{"random", lb.Random},
		{"consistent_hash", lb.ConsistentHash},
	} {
		if want, have := "svckit_"+tc.old, tc.want; have != want {
			t.Errorf("constant for %s: want %q, have %q", tc.old, want, have)
		}
		if b := balancer.Get(tc.want); b == nil || b.Name() != tc.want {
			t.Errorf("%s: not registered under its own name (have %v)", tc.want, b)
		}
		if b := balancer.Get(tc.old); b != nil {
			t.Errorf("%s: old name registered with gRPC (%T), where it collides with other libraries", tc.old, b)
		}
		if have, deprecated := lb.Canonical(tc.old); have != tc.want || !deprecated {
			t.Errorf("Canonical(%q): want %q, true; have %q, %v", tc.old, tc.want, have, deprecated)
		}
		if have, deprecated := lb.Canonical(tc.want); have != tc.want || deprecated {
			t.Errorf("Canonical(%q): want %q, false; have %q, %v", tc.want, tc.want, have, deprecated)
		}
	}
	for _, name := range []string{lb.WeightedRoundRobin, "round_robin", "no_such_policy"} {
		if have, deprecated := lb.Canonical(name); have != name || deprecated {
			t.Errorf("Canonical(%q): want it unchanged, have %q, %v", name, have, deprecated)
		}
	}
}

// Canonical maps a policy name from before the svckit_ prefix to the
// registered one; a caller that reads names from users warns on the old
// ones.
func ExampleCanonical() {
	for _, name := range []string{"p2c_ewma", lb.ConsistentHash, "round_robin"} {
		policy, deprecated := lb.Canonical(name)
		fmt.Println(name, "→", policy, deprecated)
	}
	// Output:
	// p2c_ewma → svckit_p2c_ewma true
	// svckit_consistent_hash → svckit_consistent_hash false
	// round_robin → round_robin false
}
