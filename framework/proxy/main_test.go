package proxy_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/svckit/svckit/framework/etcdtest"
)

func TestMain(m *testing.M) {
	var opts []goleak.Option
	for _, f := range etcdtest.PeerLeaks() {
		opts = append(opts, goleak.IgnoreAnyFunction(f))
	}
	goleak.VerifyTestMain(m, opts...)
}
