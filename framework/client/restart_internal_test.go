package client

import (
	"testing"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/naming"
)

func TestRestartWatchSeesAnotherInstanceOnAKnownAddress(t *testing.T) {
	ep := func(addr, id string) resolver.Endpoint {
		return resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}},
			Attributes: attributes.New(naming.AttrMetadata, naming.Metadata{InstanceID: id})}
	}
	w := &restartWatch{}
	for _, step := range []struct {
		name string
		eps  []resolver.Endpoint
		want bool
	}{
		{"first update", []resolver.Endpoint{ep("a:1", "x"), ep("b:1", "y")}, false},
		{"same instances", []resolver.Endpoint{ep("a:1", "x"), ep("b:1", "y")}, false},
		{"a new address", []resolver.Endpoint{ep("a:1", "x"), ep("b:1", "y"), ep("c:1", "z")}, false},
		{"an address gone", []resolver.Endpoint{ep("a:1", "x"), ep("c:1", "z")}, false},
		{"another instance on a known address", []resolver.Endpoint{ep("a:1", "x2"), ep("c:1", "z")}, true},
		{"then unchanged", []resolver.Endpoint{ep("a:1", "x2"), ep("c:1", "z")}, false},
		{"back on an address gone before", []resolver.Endpoint{ep("a:1", "x2"), ep("b:1", "y2"), ep("c:1", "z")}, false},
		{"no instance id", []resolver.Endpoint{{Addresses: []resolver.Address{{Addr: "a:1"}}}}, false},
	} {
		if have := w.restarted(step.eps); have != step.want {
			t.Errorf("%s: have %t, want %t", step.name, have, step.want)
		}
	}
}
