package framework

import (
	"fmt"

	"github.com/svckit/svckit/framework/client"
)

// NewClient returns a client.Client that reaches etcd as c says (see
// EtcdClientConfig) and dials under c.Prefix; opts come after the prefix,
// so they may replace it. The Client owns its etcd client: close it after
// the conns dialled from it.
//
//	cfg, err := framework.ParseConfig(os.Args[1:], os.Getenv)
//	…
//	c, err := cfg.NewClient()
//	…
//	defer c.Close()
//	cc, err := c.Dial(ctx, "fileserver")
func (c Config) NewClient(opts ...client.Option) (*client.Client, error) {
	etcd, err := c.EtcdClientConfig()
	if err != nil {
		return nil, fmt.Errorf("framework: client: %w", err)
	}
	return client.New(etcd, append([]client.Option{client.WithPrefix(c.Prefix)}, opts...)...)
}
