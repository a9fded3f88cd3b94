package lb

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/resolver"
)

func endpoints(n int) []resolver.Endpoint {
	out := make([]resolver.Endpoint, n)
	for i := range out {
		out[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256)}}}
	}
	return out
}

func addrs(eps []resolver.Endpoint) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		out[i] = ep.Addresses[0].Addr
	}
	slices.Sort(out)
	return out
}

func TestSubsetIsStableWhenEndpointsComeAndGo(t *testing.T) {
	all := endpoints(200)
	have := addrs(subset(all, "client-1", 30))
	if len(have) != 30 {
		t.Fatalf("subset size: have %d, want 30", len(have))
	}
	if again := addrs(subset(shuffled(all), "client-1", 30)); !slices.Equal(have, again) {
		t.Fatal("subset depends on the order of endpoints")
	}
	// One endpoint joins: at most one member changes.
	grown := addrs(subset(append(slices.Clone(all), endpoints(201)[200]), "client-1", 30))
	if changed := diff(have, grown); changed > 1 {
		t.Errorf("a join changed %d members, want ≤ 1", changed)
	}
	// One member leaves: exactly one member changes.
	var without []resolver.Endpoint
	for _, ep := range all {
		if ep.Addresses[0].Addr != have[0] {
			without = append(without, ep)
		}
	}
	if changed := diff(have, addrs(subset(without, "client-1", 30))); changed != 1 {
		t.Errorf("a leave changed %d members, want 1", changed)
	}
	// Clients spread: 100 clients of 30 each cover every endpoint about
	// 15 times (100·30/200).
	load := map[string]int{}
	for c := range 100 {
		for _, a := range addrs(subset(all, fmt.Sprintf("client-%d", c), 30)) {
			load[a]++
		}
	}
	lo, hi := 1<<30, 0
	for _, a := range addrs(all) {
		lo, hi = min(lo, load[a]), max(hi, load[a])
	}
	t.Logf("100 clients × 30 of 200 endpoints: load per endpoint %d to %d (mean 15)", lo, hi)
	if lo == 0 || hi > 40 {
		t.Errorf("uneven spread: %d to %d", lo, hi)
	}
}

// diff counts members of a not in b.
func diff(a, b []string) int {
	n := 0
	for _, x := range a {
		if !slices.Contains(b, x) {
			n++
		}
	}
	return n
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		js   string
		ok   bool
		size int
	}{
		{``, true, 0}, {`{}`, true, 0}, {`{"subsetSize":30}`, true, 30},
		{`{"subsetSize":-1}`, false, 0}, {`{"subsetSize":20000}`, false, 0}, {`{"subsetSize":"x"}`, false, 0},
	} {
		cfg, err := parseConfig("p", []byte(tc.js))
		if (err == nil) != tc.ok {
			t.Errorf("%s: have %v, want ok=%t", tc.js, err, tc.ok)
			continue
		}
		if err == nil && cfg.(*Config).SubsetSize != tc.size {
			t.Errorf("%s: size %d, want %d", tc.js, cfg.(*Config).SubsetSize, tc.size)
		}
	}
}
