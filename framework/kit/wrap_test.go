package kit_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-kit/kit/endpoint"

	"github.com/svckit/svckit/framework/kit"
)

func TestWrapOrder(t *testing.T) {
	var trace []string
	mark := func(name string) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			return func(ctx context.Context, req any) (any, error) {
				trace = append(trace, name)
				return next(ctx, req)
			}
		}
	}
	e := func(context.Context, any) (any, error) { trace = append(trace, "endpoint"); return nil, nil }
	for _, tc := range []struct {
		mw   []endpoint.Middleware
		want string
	}{
		{nil, "endpoint"},
		{[]endpoint.Middleware{mark("a")}, "a endpoint"},
		{[]endpoint.Middleware{mark("a"), mark("b"), mark("c")}, "a b c endpoint"},
	} {
		trace = nil
		if _, err := kit.Wrap(e, tc.mw...)(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if have := strings.Join(trace, " "); have != tc.want {
			t.Errorf("have %q, want %q", have, tc.want)
		}
	}
}
