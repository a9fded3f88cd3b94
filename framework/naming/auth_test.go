package naming_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
)

// With etcd's auth enabled, a service's user may write only its own prefix
// (and read every service, to resolve them); the password never reaches
// the logs.
func TestEtcdAuthAndRBAC(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	admin := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const rootPW, alphaPW = "root-secret-pw", "alpha-secret-pw"
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", rootPW); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "svc-alpha"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "svc-alpha", "services/alpha/", clientv3.GetPrefixRangeEnd("services/alpha/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "svc-alpha", "services/", clientv3.GetPrefixRangeEnd("services/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "alpha", alphaPW); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "alpha", "svc-alpha"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth set-up step %d: %v", i, err)
		}
	}

	l, logs := newLogger(t)
	cfg := naming.ClientConfig{Endpoints: c.Endpoints(), Username: "alpha", Password: alphaPW, Logger: l}
	if s := cfg.String(); strings.Contains(s, alphaPW) {
		t.Fatalf("ClientConfig.String shows the password: %s", s)
	}
	cli, err := naming.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })

	own, err := naming.NewRegistrar(cli, naming.Instance{Service: "alpha", Addr: "127.0.0.1:7301"}, naming.WithLogger(l))
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Register(ctx); err != nil {
		t.Fatalf("register under its own prefix: %v", err)
	}
	t.Cleanup(func() { _ = own.Deregister(context.Background()) })

	other, err := naming.NewRegistrar(cli, naming.Instance{Service: "beta", Addr: "127.0.0.1:7302"}, naming.WithLogger(l))
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	err = other.Register(rctx)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("register under another service's prefix: have %v, want permission denied", err)
	}

	// Reading every service, to resolve them, is allowed.
	rec := watchTarget(t, naming.NewBuilder(cli, naming.WithResolverLogger(l)), "etcd:///services/alpha")
	poll.Until(t, 10*time.Second, "own instance resolved", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 1 })

	bad, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints(), Username: "alpha", Password: "wrong", Logger: l, DialTimeout: 2 * time.Second})
	if err == nil {
		defer bad.Close()
		if err := naming.Ping(rctx, bad); err == nil {
			t.Fatal("wrong password: etcd answered")
		}
	}
	for _, pw := range []string{alphaPW, rootPW, "wrong"} {
		if strings.Contains(logs.String(), pw) {
			t.Fatalf("a password reached the logs:\n%s", logs)
		}
	}
}
