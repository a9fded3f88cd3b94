package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// svckit ls authenticates like every other command: --etcd-user with the
// password from SVCKIT_ETCD_PASSWORD, never shown; without the password it
// fails with etcd's refusal instead of listing nothing.
func TestLsHonoursEtcdUserAndPassword(t *testing.T) {
	c := etcdtest.Start(t)
	admin := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := naming.NewRegistrar(admin, naming.Instance{Service: "alpha", Addr: "127.0.0.1:1001"}, naming.WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	const rootPW, viewerPW = "root-secret-pw", "viewer-secret-pw"
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", rootPW); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "viewer"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "viewer", "services/", clientv3.GetPrefixRangeEnd("services/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "viewer", viewerPW); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "viewer", "viewer"); return err },
		func() error { _, err := admin.UserAdd(ctx, "stranger", viewerPW); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth set-up step %d: %v", i, err)
		}
	}
	args := []string{"ls", "--etcd", c.Endpoint(0), "--etcd-user", "viewer"}

	t.Setenv("SVCKIT_ETCD_PASSWORD", viewerPW)
	var out, errb bytes.Buffer
	if err := run(ctx, args, &out, &errb); err != nil {
		t.Fatalf("ls as viewer: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "127.0.0.1:1001") {
		t.Fatalf("ls as viewer lacks the instance:\n%s", out.String())
	}

	t.Setenv("SVCKIT_ETCD_PASSWORD", "wrong-pw")
	out.Reset()
	errb.Reset()
	err = run(ctx, args, &out, &errb)
	if err == nil {
		t.Fatalf("ls with a wrong password listed:\n%s", out.String())
	}
	for _, s := range []string{err.Error(), out.String(), errb.String()} {
		if strings.Contains(s, viewerPW) || strings.Contains(s, "wrong-pw") {
			t.Fatalf("a password is shown: %q", s)
		}
	}
	if !strings.Contains(err.Error(), "authentication failed") && !strings.Contains(err.Error(), "password") {
		t.Fatalf("ls with a wrong password: %v, want etcd's refusal", err)
	}

	// fileclient: the viewer lists; a user without a role on the prefix is
	// told so, at once, rather than "no ready instance" after 5 s.
	fileclient := filepath.Join(bins(t), "fileclient")
	env := []string{"SVCKIT_ETCD_PASSWORD=" + viewerPW}
	if r := runBin(t, fileclient, env, "--etcd", c.Endpoint(0), "--etcd-user", "stranger", "ls"); r.code != 1 ||
		!strings.Contains(r.stderr, "read services/") || !strings.Contains(r.stderr, "permission denied") || strings.Contains(r.stderr, viewerPW) {
		t.Fatalf("fileclient as a user without a role: exit %d, stderr %q; want 1 and a denied read of services/", r.code, r.stderr)
	}
	// svckit proxy: the same refusal at start, not a proxy that never
	// turns SERVING.
	svckit := filepath.Join(bins(t), "svckit")
	if r := runBin(t, svckit, env, "proxy", "--listen", "127.0.0.1:0", "--etcd", c.Endpoint(0), "--etcd-user", "stranger"); r.code != 1 ||
		!strings.Contains(r.stderr, "read services/") || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("svckit proxy as a user without a role: exit %d, stderr %q; want 1 and a denied read of services/", r.code, r.stderr)
	}
}
