package etcdtest_test

import (
	"context"
	"testing"
	"time"

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

func TestSingleMemberPutGetRestartWipe(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := c.Restart(0); err != nil {
		t.Fatalf("restart: %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if have, want := len(resp.Kvs), 1; have != want {
		t.Fatalf("after restart: have %d keys, want %d", have, want)
	}
	if err := c.Wipe(); err != nil {
		t.Fatalf("wipe: %v", err)
	}
	resp, err = cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after wipe: %v", err)
	}
	if have, want := len(resp.Kvs), 0; have != want {
		t.Fatalf("after wipe: have %d keys, want %d", have, want)
	}
}

func TestClusterLeaderLoss(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	old := c.Leader()
	if old < 0 {
		t.Fatal("no leader after start")
	}
	c.Stop(old)
	deadline := time.Now().Add(20 * time.Second)
	for c.Leader() < 0 || c.Leader() == old {
		if time.Now().After(deadline) {
			t.Fatal("no new leader after stopping the old one")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put with new leader: %v", err)
	}
	if err := c.Restart(old); err != nil {
		t.Fatalf("restart old leader: %v", err)
	}
	if !c.Running(old) {
		t.Fatal("old leader not running after restart")
	}
}
