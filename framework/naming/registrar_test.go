package naming_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/internal/poll"
)

func TestNewRegistrarRefusesInvalidInput(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	big := strings.Repeat("x", naming.MaxRecordBytes)
	for _, tc := range []struct {
		name string
		inst naming.Instance
		opts []naming.RegistrarOption
	}{
		{"empty service", naming.Instance{Service: "", Addr: "127.0.0.1:1"}, nil},
		{"service with slash", naming.Instance{Service: "a/b", Addr: "127.0.0.1:1"}, nil},
		{"service with space", naming.Instance{Service: "my svc", Addr: "127.0.0.1:1"}, nil},
		{"address without port", naming.Instance{Service: "svc", Addr: "127.0.0.1"}, nil},
		{"address port zero", naming.Instance{Service: "svc", Addr: "127.0.0.1:0"}, nil},
		{"address port too big", naming.Instance{Service: "svc", Addr: "127.0.0.1:70000"}, nil},
		{"unspecified address", naming.Instance{Service: "svc", Addr: "0.0.0.0:80"}, nil},
		{"empty host", naming.Instance{Service: "svc", Addr: ":80"}, nil},
		{"metadata too large", naming.Instance{Service: "svc", Addr: "127.0.0.1:1",
			Metadata: naming.Metadata{Labels: map[string]string{"note": big}}}, nil},
		{"secret-looking label", naming.Instance{Service: "svc", Addr: "127.0.0.1:1",
			Metadata: naming.Metadata{Labels: map[string]string{"db_password": "x"}}}, nil},
		{"prefix without slash", naming.Instance{Service: "svc", Addr: "127.0.0.1:1"},
			[]naming.RegistrarOption{naming.WithPrefix("services")}},
		{"ttl below 1s", naming.Instance{Service: "svc", Addr: "127.0.0.1:1"},
			[]naming.RegistrarOption{naming.WithTTL(500 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := naming.NewRegistrar(cli, tc.inst, tc.opts...)
			if err == nil {
				t.Fatal("have nil error, want one")
			}
			if !errors.Is(err, naming.ErrInvalid) {
				t.Fatalf("have %v, want an error wrapping ErrInvalid", err)
			}
		})
	}
	if n := etcdtest.Count(t, cli, ""); n != 0 {
		t.Fatalf("refused registrations wrote %d keys", n)
	}
}

func TestRegisterWritesEtcdRecordAndDeregisterRemovesIt(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	r, err := naming.NewRegistrar(cli, naming.Instance{Service: "svc", Addr: "127.0.0.1:5000",
		Metadata: naming.Metadata{Version: "1.2.3", Weight: 5}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Register(ctx); err != nil {
		t.Fatalf("register: %v", err)
	}
	resp, err := cli.Get(ctx, "services/svc/127.0.0.1:5000")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get record: %v, %d kvs", err, len(resp.Kvs))
	}
	have := string(resp.Kvs[0].Value)
	for _, want := range []string{`"Op":0`, `"Addr":"127.0.0.1:5000"`, `"version":"1.2.3"`, `"weight":5`} {
		if !strings.Contains(have, want) {
			t.Errorf("record %s lacks %s", have, want)
		}
	}
	if resp.Kvs[0].Lease == 0 {
		t.Error("record has no lease")
	}
	if st := r.Status(); st.State != naming.StateRegistered || st.Registrations != 1 {
		t.Errorf("status after register: %+v", st)
	}
	if err := r.Register(ctx); err == nil {
		t.Error("second Register: have nil error, want one")
	}
	if err := r.Deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if n := etcdtest.Count(t, cli, "services/"); n != 0 {
		t.Fatalf("after deregister: %d keys left", n)
	}
	if _, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatalf("ttl: %v", err)
	}
	if st := r.Status(); st.State != naming.StateStopped {
		t.Errorf("state after deregister: have %s, want stopped", st.State)
	}
	if err := r.Deregister(ctx); err != nil {
		t.Errorf("second deregister: %v", err)
	}
}

func TestRegisterFailsClearlyWhenEtcdIsUnreachable(t *testing.T) {
	cli := newClient(t, []string{"127.0.0.1:1"}, nil)
	r, err := naming.NewRegistrar(cli, naming.Instance{Service: "svc", Addr: "127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = r.Register(ctx)
	if err == nil {
		t.Fatal("register against no etcd: have nil error")
	}
	if !strings.Contains(err.Error(), "services/svc/127.0.0.1:5000") {
		t.Errorf("error %q does not name the key", err)
	}
}

func TestProcessDeathLetsRecordExpireAfterTTL(t *testing.T) {
	c := etcdtest.Start(t)
	admin := c.Client(t)
	// The dying "process" has its own client, closed abruptly.
	cli, err := naming.NewClient(naming.ClientConfig{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := naming.NewRegistrar(cli, naming.Instance{Service: "svc", Addr: "127.0.0.1:5001"}, naming.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()
	<-r.Done()
	if n := etcdtest.Count(t, admin, "services/svc/"); n != 1 {
		t.Fatalf("right after the client closed: have %d keys, want 1 (the lease lives until its TTL)", n)
	}
	took := poll.Until(t, 10*time.Second, "record expired", func() bool { return etcdtest.Count(t, admin, "services/svc/") == 0 })
	t.Logf("record gone %s after the client closed (TTL 2s)", took.Round(time.Millisecond))
}

func TestRecordIsBackAfterOutsideInterference(t *testing.T) {
	c := etcdtest.Start(t)
	admin := c.Client(t)
	for _, tc := range []struct {
		name   string
		meddle func(ctx context.Context, r *naming.Registrar) error
	}{
		{"lease revoked", func(ctx context.Context, r *naming.Registrar) error {
			_, err := admin.Revoke(ctx, r.Status().LeaseID)
			return err
		}},
		{"key deleted", func(ctx context.Context, r *naming.Registrar) error {
			_, err := admin.Delete(ctx, r.Key())
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := c.Client(t)
			r := register(t, cli, "meddle", "127.0.0.1:6000", naming.WithTTL(5*time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			before := r.Status()
			if err := tc.meddle(ctx, r); err != nil {
				t.Fatalf("meddle: %v", err)
			}
			took := poll.Until(t, 2*time.Second, "record back", func() bool {
				st := r.Status()
				if st.State != naming.StateRegistered || st.Registrations < 2 {
					return false
				}
				resp, err := admin.Get(ctx, r.Key())
				return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == st.LeaseID
			})
			after := r.Status()
			if after.LeaseID == before.LeaseID {
				t.Errorf("lease unchanged after %s", tc.name)
			}
			if after.Losses < 1 {
				t.Errorf("losses: have %d, want ≥ 1", after.Losses)
			}
			t.Logf("%s: record back in %s", tc.name, took.Round(time.Millisecond))
		})
	}
}

func TestEtcdReplacedByEmptyOneEveryInstanceRegistersAgain(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	var rs []*naming.Registrar
	for _, addr := range []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"} {
		rs = append(rs, register(t, cli, "wiped", addr, naming.WithTTL(2*time.Second)))
	}
	b := naming.NewBuilder(cli, naming.WithResync(200*time.Millisecond))
	rec := watchTarget(t, b, "etcd:///services/wiped")
	poll.Until(t, 10*time.Second, "3 endpoints resolved", func() bool { s, _ := rec.last(); return len(s.Endpoints) == 3 })
	if err := c.Wipe(); err != nil {
		t.Fatalf("wipe: %v", err)
	}
	took := poll.Until(t, 30*time.Second, "every instance registered again", func() bool {
		for _, r := range rs {
			if st := r.Status(); st.State != naming.StateRegistered || st.Registrations < 2 {
				return false
			}
		}
		return etcdtest.Count(t, cli, "services/wiped/") == 3
	})
	t.Logf("3 instances registered again %s after etcd lost its data", took.Round(time.Millisecond))

	// The new etcd's revisions start again from 1: a watch left at the old
	// revision would never see a new instance. The resolver notices.
	register(t, cli, "wiped", "127.0.0.1:7004")
	poll.Until(t, 10*time.Second, "instance registered after the wipe resolved", func() bool {
		s, _ := rec.last()
		return slices.Contains(addrsOf(s), "127.0.0.1:7004")
	})
	if st, _ := b.Status("services/wiped"); st.Lists < 2 {
		t.Errorf("resolver did not list again after the wipe: %+v", st)
	}
}

func TestKeepaliveResponsesAreConsumed(t *testing.T) {
	c := etcdtest.Start(t)
	l, logs := newLogger(t)
	cli := newClient(t, c.Endpoints(), l)
	r := register(t, cli, "ka", "127.0.0.1:7100", naming.WithTTL(time.Second), naming.WithLogger(l))
	// etcd's client warns once 16 responses are left unread; a 1s TTL sends
	// about three a second.
	poll.Until(t, 30*time.Second, "20 keepalives", func() bool { return r.Status().KeepAlives >= 20 })
	if n := logs.Count("keepalive response queue is full"); n != 0 {
		t.Fatalf("keepalive warning logged %d times:\n%s", n, logs)
	}
	if st := r.Status(); st.Losses != 0 {
		t.Fatalf("losses on a healthy etcd: %d", st.Losses)
	}
}

// Register and Deregister called together, many times over: nothing panics,
// at most one Register wins, and once a Deregister returns no record is
// left, whichever call got where first.
func TestConcurrentRegisterAndDeregisterLeaveNoRecord(t *testing.T) {
	c := etcdtest.Start(t)
	admin := c.Client(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Deregister is started at points spread from 0 to twice the time one
	// Register takes.
	took := registerTime(ctx, t, cli)
	step := 2 * took / 8
	const rounds = 60
	var registered, cutShort int
	for i := range rounds {
		// A long TTL: a record left behind stays for the checks to see.
		r, err := naming.NewRegistrar(cli, naming.Instance{Service: "race", Addr: fmt.Sprintf("127.0.0.1:%d", 8000+i)},
			naming.WithTTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		switch have := raceRound(ctx, t, r, admin, i, step); have {
		case 0:
			cutShort++
		case 1:
			registered++
		default:
			t.Fatalf("round %d: %d Register calls succeeded, want at most 1", i, have)
		}
		if n := etcdtest.Count(t, admin, "services/race/"); n != 0 {
			t.Fatalf("round %d: %d records left after every call returned", i, n)
		}
		select {
		case <-r.Done():
		default:
			t.Fatalf("round %d: Done not closed after Deregister", i)
		}
		if st := r.Status(); st.State != naming.StateStopped {
			t.Fatalf("round %d: state %s, want stopped", i, st.State)
		}
		if err := r.Register(ctx); err == nil {
			t.Fatalf("round %d: Register after Deregister: have nil error", i)
		}
	}
	t.Logf("Register alone took %s", took.Round(time.Microsecond))
	t.Logf("%d rounds: %d registered then deregistered, %d with every Register cut short or refused", rounds, registered, cutShort)
}

// registerTime returns how long one Register takes here: the fastest of
// three, the first one connecting.
func registerTime(ctx context.Context, t *testing.T, cli *clientv3.Client) time.Duration {
	t.Helper()
	took := time.Hour
	for i := range 3 {
		probe, err := naming.NewRegistrar(cli, naming.Instance{Service: "probe", Addr: fmt.Sprintf("127.0.0.1:%d", 7990+i)})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := probe.Register(ctx); err != nil {
			t.Fatal(err)
		}
		took = min(took, time.Since(start))
		if err := probe.Deregister(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return took
}

// raceRound is round i: three Registers and two Deregisters of r at once,
// each Deregister after a number of steps that varies with i. Each
// Deregister checks through admin that no record is left when it returns.
// It returns how many Registers succeeded.
func raceRound(ctx context.Context, t *testing.T, r *naming.Registrar, admin *clientv3.Client, i int, step time.Duration) int32 {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if r.Register(ctx) == nil {
				wins.Add(1)
			}
		})
	}
	for d := range 2 {
		wg.Go(func() {
			// Deregister at a point that moves through the Registers'
			// grant and put from round to round (not a synchronisation).
			time.Sleep(time.Duration((i+d*3)%8) * step)
			if err := r.Deregister(ctx); err != nil {
				t.Errorf("round %d: deregister %d: %v", i, d, err)
				return
			}
			resp, err := admin.Get(ctx, r.Key())
			if err != nil {
				t.Errorf("round %d: get: %v", i, err)
			} else if len(resp.Kvs) != 0 {
				t.Errorf("round %d: record left right after deregister %d returned", i, d)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return wins.Load()
}

// A Deregister that cancels a Register whose put etcd applied but whose
// reply the Register never saw revokes that lease itself: when it returns
// nil, no record is left, even when the Register's own revoke of the lease
// failed. A client-side interceptor holds the put's reply until the
// Register is cancelled and makes that first revoke time out; etcd and
// gRPC are real.
func TestDeregisterRevokesTheLeaseOfAnAppliedButCancelledPut(t *testing.T) {
	c := etcdtest.Start(t)
	admin := c.Client(t)
	var (
		holdPut, failRevoke atomic.Bool
		putApplied          = make(chan struct{})
	)
	holdPut.Store(true)
	failRevoke.Store(true)
	faults := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch {
		case method == "/etcdserverpb.KV/Put" && holdPut.CompareAndSwap(true, false):
			if err := invoke(ctx, method, req, reply, cc, opts...); err != nil {
				return err
			}
			close(putApplied)
			<-ctx.Done() // the reply is lost: the caller sees its context end
			return status.FromContextError(ctx.Err()).Err()
		case method == "/etcdserverpb.Lease/LeaseRevoke" && failRevoke.CompareAndSwap(true, false):
			<-ctx.Done() // the Register's own revoke times out
			return status.FromContextError(ctx.Err()).Err()
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(faults)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	l, _ := newLogger(t)
	r, err := naming.NewRegistrar(cli, naming.Instance{Service: "cut", Addr: "127.0.0.1:7001"},
		naming.WithTTL(time.Minute), naming.WithLogger(l)) // a long TTL: a record left stays for the check
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	regErr := make(chan error, 1)
	go func() { regErr <- r.Register(ctx) }()
	select {
	case <-putApplied:
	case err := <-regErr:
		t.Fatalf("Register returned before its put was applied: %v", err)
	case <-ctx.Done():
		t.Fatal("the put was not applied within 20s")
	}
	if n := etcdtest.Count(t, admin, "services/cut/"); n != 1 {
		t.Fatalf("after the put was applied: %d records, want 1", n)
	}
	derr := r.Deregister(ctx)
	if err := <-regErr; err == nil {
		t.Fatal("Register cancelled by Deregister: have nil error")
	}
	if failRevoke.Load() {
		t.Fatal("the Register's own revoke was never tried: the window was not reached")
	}
	n := etcdtest.Count(t, admin, "services/cut/")
	t.Logf("Deregister: %v; records left: %d", derr, n)
	if derr == nil && n != 0 {
		t.Fatalf("Deregister returned nil with %d record(s) left", n)
	}
	if derr != nil {
		t.Fatalf("Deregister: %v, want nil: etcd is reachable", derr)
	}
}

// etcd gone right after Register, before the registrar's watch on its key
// has a stream: the lease runs out on the client's clock and the registrar
// says so. clientv3's Watch blocks until it has a stream, so a registrar
// that waited in it would stay "registered" for the whole outage.
func TestEtcdGoneRightAfterRegisterIsALoss(t *testing.T) {
	c := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	cli := newClient(t, []string{p.Addr()}, nil)
	var once sync.Once
	r := register(t, cli, "gone", "127.0.0.1:7200", naming.WithTTL(2*time.Second),
		naming.WithBeforeWatch(func() { once.Do(p.Cut) }))
	took := poll.Until(t, 15*time.Second, "registration reported lost", func() bool {
		st := r.Status()
		return st.State != naming.StateRegistered && st.Losses >= 1
	})
	t.Logf("loss seen %s after etcd went away (TTL 2s)", took.Round(time.Millisecond))
	p.Heal()
	poll.Until(t, 15*time.Second, "registered again once etcd is back", func() bool {
		return r.Status().State == naming.StateRegistered
	})
}
