package client_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/client"
	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
)

// gate is a slog handler that blocks the first record it handles until
// released: it holds a Dial in progress (while it logs a deprecated
// balancer name).
type gate struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Enabled(context.Context, slog.Level) bool { return true }
func (g *gate) Handle(context.Context, slog.Record) error {
	g.once.Do(func() { close(g.entered); <-g.release })
	return nil
}
func (g *gate) WithAttrs([]slog.Attr) slog.Handler { return g }
func (g *gate) WithGroup(string) slog.Handler      { return g }

// A Close that lands while a Dial is in progress waits for it: Close never
// returns before a Dial that then hands out a conn on the closed etcd
// client, and every Dial after Close fails.
func TestCloseWaitsForTheDialsInProgress(t *testing.T) {
	e := etcdtest.Start(t)
	c, err := client.New(naming.ClientConfig{Endpoints: e.Endpoints()}, client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		cc, err := c.Dial(context.Background(), "testsvc", client.WithoutWait(),
			client.WithBalancer("p2c_ewma"), client.WithLogger(slog.New(g)))
		if err != nil {
			t.Errorf("a Dial begun before Close: %v", err)
			return
		}
		_ = cc.Close()
	})
	<-g.entered
	closed := make(chan struct{})
	wg.Go(func() {
		defer close(closed)
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	// Close must still be waiting for the Dial, held in its logger: give
	// it time to return if it would.
	time.Sleep(100 * time.Millisecond)
	select {
	case <-closed:
		t.Error("Close returned before the Dial in progress")
	default:
	}
	close(g.release)
	wg.Wait()
	if cc, err := c.Dial(context.Background(), "testsvc", client.WithoutWait()); err == nil {
		_ = cc.Close()
		t.Fatal("Dial after Close returned a conn")
	}
}
