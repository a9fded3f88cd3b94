package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/etcdtest"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/test/fleet/load"
)

// plaintext starts a fleet on a plaintext etcd of one member.
func plaintext(t *testing.T) *fleet {
	t.Helper()
	c := etcdtest.Start(t)
	ep := strings.Join(c.Endpoints(), ",")
	return newFleet(t, c, []string{"--etcd", ep}, naming.ClientConfig{Endpoints: c.Endpoints()})
}

// steady runs the mix for 8 s and checks it: no call failed, downloads
// completed and verified, both services answered, and no FileSrv instance
// was starved of the short calls by the streams it served (each got at
// least minShare of the Stat calls).
func (f *fleet) steady(t *testing.T, run driver, minShare float64) load.Report {
	t.Helper()
	r := wait(t, run(t, f.mix(8*time.Second)), 90*time.Second)
	t.Logf("steady:\n%s", r.Summary())
	f.check(t, "steady", r)
	stat := r["stat"]
	for _, i := range f.files {
		if minShare == 0 || stat == nil || stat.OK == 0 {
			break // check has already failed on too few calls
		}
		share := float64(stat.Peers[i.addr]) / float64(stat.OK)
		if share < minShare {
			t.Errorf("steady: instance %s answered %.1f%% of %d Stat calls, want ≥ %.0f%% (peers %v)",
				i.addr, 100*share, stat.OK, 100*minShare, stat.Peers)
		}
	}
	return r
}

// check fails t unless r has no failed call, at least two verified
// downloads and calls of both unary methods.
func (f *fleet) check(t *testing.T, phase string, r load.Report) {
	t.Helper()
	if n := r.Failed(); n != 0 {
		t.Errorf("%s: %d calls failed:\n%s", phase, n, r.Summary())
	}
	for method, least := range map[string]int{"download": 2, "stat": 100, "sleep": 100} {
		if m := r[method]; m == nil || m.OK < least {
			t.Errorf("%s: fewer than %d successful %s calls:\n%s", phase, least, method, r.Summary())
		}
	}
}

// rolling restarts one instance of each service under load, the FileSrv
// one while downloads are in flight on it, and checks that no call failed.
func (f *fleet) rolling(t *testing.T, run driver) {
	t.Helper()
	ch := run(t, f.mix(16*time.Second))
	start := time.Now()
	f.restart(f.files, 0, f.startFiles)
	f.restart(f.sleepers, 0, func() *instance { return f.startService("sleeper") })
	if d := time.Since(start); d > 14*time.Second {
		t.Errorf("rolling restart took %s, longer than the load run", d)
	}
	r := wait(t, ch, 90*time.Second)
	t.Logf("rolling restart in %s:\n%s", time.Since(start).Round(time.Millisecond), r.Summary())
	f.check(t, "rolling restart", r)
}

func TestThickClient(t *testing.T) {
	f := plaintext(t)
	run := f.thick()
	f.steady(t, run, 0.10)
	f.rolling(t, run)
}

func TestProxy(t *testing.T) {
	f := plaintext(t)
	_, addr := startCmd(t, append([]string{"proxy", "--listen", "127.0.0.1:0"}, f.etcdArgs...)...)
	run := plain(addr, addr, nil)
	// The client sees only the proxy, so the share of each instance is not
	// measured here; framework/proxy's TestProxyLongStreamOfUnlinkedServiceDoesNotStarve
	// counts it on the servers, for a streaming service the proxy does not link.
	f.steady(t, run, 0)
	f.rolling(t, run)
}

// TestXDS runs the mix through `svckit xds` with five services registered,
// then restarts `svckit xds` while etcd is down: the plain client keeps
// its configuration and its calls, and a new client works once etcd is
// back.
func TestXDS(t *testing.T) {
	f := plaintext(t)
	for _, name := range []string{"extra-a", "extra-b", "extra-c"} {
		f.startService(name)
	}
	xdsAddr := freeAddr(t)
	xdsArgs := append([]string{"xds", "--listen", xdsAddr}, f.etcdArgs...)
	xdsProc, _ := startCmd(t, xdsArgs...)
	env := []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap(t, xdsAddr)}
	run := plain("xds:///fileserver", "xds:///sleeper", env)
	f.steady(t, run, 0.10)
	f.rolling(t, run)

	ch := run(t, f.mix(12*time.Second))
	f.etcd.Stop(0)
	if code := xdsProc.Stop(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("svckit xds: exit %d:\n%s", code, xdsProc.Output())
	}
	startCmd(t, xdsArgs...)     // etcd is down: it serves, and serves nothing it does not know
	time.Sleep(3 * time.Second) // hold the outage while the load runs
	if err := f.etcd.Restart(0); err != nil {
		t.Fatal(err)
	}
	r := wait(t, ch, 90*time.Second)
	t.Logf("svckit xds restarted while etcd was down:\n%s", r.Summary())
	f.check(t, "xds restart, etcd down", r)

	f.steady(t, run, 0.10) // a new client, from the restarted server
}

// bootstrap writes a gRPC xDS bootstrap file naming the server at addr.
func bootstrap(t *testing.T, addr string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bootstrap.json")
	js := fmt.Sprintf(`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3"]}],"node":{"id":"fleet"}}`, addr)
	if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTLSEtcd runs the fleet, `svckit proxy` and `svckit xds` against an
// etcd that accepts only mutual TLS: every process reaches it with
// --etcd-ca, --etcd-cert and --etcd-key, and every mode serves the mix.
func TestTLSEtcd(t *testing.T) {
	c, certs := etcdtest.StartTLS(t)
	tlsConfig, err := certs.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--etcd", strings.Join(c.Endpoints(), ","),
		"--etcd-ca", certs.CA, "--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey}
	f := newFleet(t, c, args, naming.ClientConfig{Endpoints: c.Endpoints(), TLS: tlsConfig})

	t.Run("thick", func(t *testing.T) {
		run := f.thick()
		f.steady(t, run, 0.10)
		f.rolling(t, run)
	})
	t.Run("proxy", func(t *testing.T) {
		_, addr := startCmd(t, append([]string{"proxy", "--listen", "127.0.0.1:0"}, f.etcdArgs...)...)
		f.steady(t, plain(addr, addr, nil), 0)
	})
	t.Run("xds", func(t *testing.T) {
		_, addr := startCmd(t, append([]string{"xds", "--listen", "127.0.0.1:0"}, f.etcdArgs...)...)
		f.steady(t, plain("xds:///fileserver", "xds:///sleeper", []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap(t, addr)}), 0.10)
	})
}
