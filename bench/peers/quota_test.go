package peers

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/svckit/svckit/internal/proc"
)

// quotaLoads are the offered loads of the quota runs, as multiples of the
// unloaded peak of one core.
var quotaLoads = []float64{0.5, 0.7, 0.9, 1.2}

// quotaTable runs svckit's limiter in a server free to use two cores
// (GOMAXPROCS=2, not pinned), once under a cgroup v2 file that says the
// container may use one (cpu.max "100000 100000", written here and read
// through overload.WithCgroupRoot) and once without: with the file, the
// CPU share is of one core and shedding starts once the process uses 80 %
// of one core, as it would in a container limited to one core; without,
// the share is of two. It returns the markdown table of what it saw.
func quotaTable(t *testing.T, iters int, base baseline, pl plan) string {
	root := t.TempDir()
	for name, body := range map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	b.WriteString("\nsvckit's limit in a process free to use 2 cores, with and without a cgroup file of a 1-core quota; load as a multiple of the 1-core peak:\n\n")
	b.WriteString("| cgroup quota | offered | CPU share read | shed % | goodput, calls/s |\n| --- | --- | --- | --- | --- |\n")
	for _, q := range []struct{ name, root string }{{"1 core (file)", root}, {"none (2 cores)", ""}} {
		for _, load := range quotaLoads {
			cpu, shed, goodput := quotaRun(t, iters, q.root, load*base.peak, pl)
			t.Logf("quota %s at %gx: CPU share %.2f, shed %.1f%%, goodput %.0f/s", q.name, load, cpu, 100*shed, goodput)
			fmt.Fprintf(&b, "| %s | %g× | %.2f | %.1f | %.0f |\n", q.name, load, cpu, 100*shed, goodput)
		}
	}
	return b.String()
}

// quotaRun offers rate to a two-core svckit server for pl.over after a
// calm start, and returns the CPU share its limiter read halfway through,
// the share of calls shed, and the goodput.
func quotaRun(t *testing.T, iters int, root string, rate float64, pl plan) (cpu, shed, goodput float64) {
	env := []string{serverEnv + "=" + svckit, itersEnv + "=" + strconv.Itoa(iters), "GOMAXPROCS=2", cgroupEnv + "=" + root}
	pr, err := proc.Start(os.Args[0], nil, env)
	if err != nil {
		t.Fatal(err)
	}
	cc, admin, stop := startProcess(t, svckit, pr)
	defer stop()
	closedLoop(cc, 1, 200*time.Millisecond)
	read := make(chan float64, 1)
	time.AfterFunc(pl.warm+pl.over/2, func() { read <- cpuShare(admin) })
	calls := offer(cc, []phase{{calm * rate, pl.warm}, {rate, pl.over}}, deadline)
	var n, ok, shedN int
	for _, c := range calls {
		if c.phase != 1 {
			continue
		}
		n++
		switch c.code {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			shedN++
		}
	}
	return <-read, float64(shedN) / float64(n), float64(ok) / pl.over.Seconds()
}

// cpuShare reads svckit_overload_cpu_utilization from the admin server's
// /metrics; -1 if it cannot.
func cpuShare(admin string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "svckit_overload_cpu_utilization "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}
