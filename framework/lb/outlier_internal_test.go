package lb

import (
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseOutlierConfig(t *testing.T) {
	for _, tc := range []struct {
		name, js string
		want     *OutlierDetection
		err      string // in the error, if any
	}{
		{name: "unset", js: `{}`},
		{name: "A50 defaults", js: `{"outlierDetection":{"failurePercentageEjection":{},"successRateEjection":{}}}`,
			want: &OutlierDetection{Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 10,
				SuccessRateEjection:       &SuccessRateEjection{StdevFactor: 1900, EnforcementPercentage: 100, MinimumHosts: 5, RequestVolume: 100},
				FailurePercentageEjection: &FailurePercentageEjection{Threshold: 85, EnforcementPercentage: 0, MinimumHosts: 5, RequestVolume: 50}}},
		{name: "set", js: `{"outlierDetection":{"interval":"0.5s","baseEjectionTime":"1s","maxEjectionTime":"0s","maxEjectionPercent":0,
			"failurePercentageEjection":{"threshold":25,"enforcementPercentage":100,"minimumHosts":3,"requestVolume":10}}}`,
			want: &OutlierDetection{Interval: 500 * time.Millisecond, BaseEjectionTime: time.Second,
				FailurePercentageEjection: &FailurePercentageEjection{Threshold: 25, EnforcementPercentage: 100, MinimumHosts: 3, RequestVolume: 10}}},
		{name: "zero interval", js: `{"outlierDetection":{"interval":"0s"}}`, err: "outlierDetection: interval 0s: must be positive"},
		{name: "negative base", js: `{"outlierDetection":{"baseEjectionTime":"-1s"}}`, err: "baseEjectionTime -1s: must not be negative"},
		{name: "percent", js: `{"outlierDetection":{"maxEjectionPercent":101}}`, err: "maxEjectionPercent 101: must be 0 to 100"},
		{name: "threshold", js: `{"outlierDetection":{"failurePercentageEjection":{"threshold":200}}}`, err: "failurePercentageEjection.threshold 200"},
		{name: "enforcement", js: `{"outlierDetection":{"successRateEjection":{"enforcementPercentage":101}}}`, err: "successRateEjection.enforcementPercentage 101"},
		{name: "go duration", js: `{"outlierDetection":{"interval":"1m"}}`, err: `duration "1m": want seconds with an s suffix`},
		{name: "number", js: `{"outlierDetection":{"interval":10}}`, err: `duration 10: want a string`},
		{name: "NaN", js: `{"outlierDetection":{"interval":"NaNs"}}`, err: `duration "NaNs"`},
		{name: "negative count", js: `{"outlierDetection":{"maxEjectionPercent":-1}}`, err: "cannot unmarshal"},
	} {
		cfg, err := parseConfig("svckit_random", []byte(tc.js))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "lb: svckit_random ") {
				t.Errorf("%s: have %v, want an error with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		have, _ := json.Marshal(cfg.(*Config).OutlierDetection)
		want, _ := json.Marshal(tc.want)
		if string(have) != string(want) {
			t.Errorf("%s: have %s, want %s", tc.name, have, want)
		}
	}
}

// TestOutlierConfigRoundTrips: what MarshalJSON writes, UnmarshalJSON reads
// back as it was, so that package client can write the config as JSON.
func TestOutlierConfigRoundTrips(t *testing.T) {
	want := OutlierDetection{Interval: 1500 * time.Millisecond, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: time.Minute,
		FailurePercentageEjection: &FailurePercentageEjection{Threshold: 25, EnforcementPercentage: 100, MinimumHosts: 3, RequestVolume: 10}}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var have OutlierDetection
	if err := json.Unmarshal(b, &have); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	hb, _ := json.Marshal(have)
	if string(hb) != string(b) || have.Interval != want.Interval || have.MaxEjectionPercent != 0 {
		t.Errorf("have %s, want %s", hb, b)
	}
}

func TestEjectionTime(t *testing.T) {
	od := &OutlierDetection{BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 100 * time.Second}
	for _, tc := range []struct {
		n    int
		base time.Duration
		want time.Duration
	}{
		{1, 30 * time.Second, 30 * time.Second}, {3, 30 * time.Second, 90 * time.Second},
		{4, 30 * time.Second, 100 * time.Second}, {1 << 40, 30 * time.Second, 100 * time.Second},
		// A base longer than the max is the cap.
		{2, 200 * time.Second, 200 * time.Second},
		{5, 0, 0},
	} {
		od.BaseEjectionTime = tc.base
		if have := ejectionTime(od, tc.n); have != tc.want {
			t.Errorf("base %s, ejection %d: have %s, want %s", tc.base, tc.n, have, tc.want)
		}
	}
}

func TestInstanceFailed(t *testing.T) {
	for c, want := range map[codes.Code]bool{
		codes.OK: false, codes.Unavailable: true, codes.Internal: true, codes.Unknown: true, codes.DataLoss: true,
		codes.ResourceExhausted: false, codes.DeadlineExceeded: false, codes.Canceled: false, codes.NotFound: false,
		codes.InvalidArgument: false, codes.PermissionDenied: false, codes.Aborted: false, codes.Unimplemented: false,
	} {
		var err error
		if c != codes.OK {
			err = status.Error(c, "x")
		}
		if have := instanceFailed(err); have != want {
			t.Errorf("%s: have %t, want %t", c, have, want)
		}
	}
	if !instanceFailed(errors.New("not a status")) {
		t.Error("a non-status error (Unknown) must count as failed")
	}
}

type fixedPicker struct{ done func(balancer.DoneInfo) }

func (p fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{Done: p.done}, nil
}

// TestCountingPickAllocatesNothing: counting a call's result for outlier
// detection adds no allocation to a pick, with or without a child Done.
func TestCountingPickAllocatesNothing(t *testing.T) {
	fail := balancer.DoneInfo{Err: status.Error(codes.Unavailable, "x")}
	for _, tc := range []struct {
		name  string
		child func(balancer.DoneInfo)
	}{{"no child Done", nil}, {"child Done", func(balancer.DoneInfo) {}}} {
		st := newEndpointStats()
		p := &countingPicker{child: fixedPicker{tc.child}, stats: st}
		allocs := testing.AllocsPerRun(1000, func() {
			res, _ := p.Pick(balancer.PickInfo{})
			res.Done(balancer.DoneInfo{})
			res, _ = p.Pick(balancer.PickInfo{})
			res.Done(fail)
		})
		if allocs != 0 && !(raceEnabled && tc.child != nil) {
			t.Errorf("%s: %v allocations a pick, want 0", tc.name, allocs)
		}
		if ok, bad := st.okCalls.Load(), st.badCalls.Load(); ok != bad || ok < 1000 {
			t.Errorf("%s: counted %d ok and %d failed, want as many of each", tc.name, ok, bad)
		}
	}
}

func TestDefaultOutlierDetectionIsValid(t *testing.T) {
	od := DefaultOutlierDetection()
	if err := od.Validate(); err != nil || !od.enabled() {
		t.Errorf("have %v, enabled %t; want valid and enabled", err, od.enabled())
	}
}

type fakeSubConn struct {
	balancer.SubConn
	id int
}

type turnsPicker struct {
	scs []balancer.SubConn
	n   int
}

func (p *turnsPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	p.n++
	return balancer.PickResult{SubConn: p.scs[p.n%len(p.scs)]}, nil
}

// TestDetectionPickerSkipsEjected: the picker of svckit_outlier_detection
// picks again past an ejected SubConn, takes the child's pick when every
// one is ejected, counts each call, and allocates nothing.
func TestDetectionPickerSkipsEjected(t *testing.T) {
	a, b := &fakeSubConn{id: 1}, &fakeSubConn{id: 2}
	sa, sb := newEndpointStats(), newEndpointStats()
	var m atomic.Pointer[map[balancer.SubConn]*endpointStats]
	m.Store(&map[balancer.SubConn]*endpointStats{a: sa, b: sb})
	p := &detectionPicker{child: &turnsPicker{scs: []balancer.SubConn{a, b}}, subConns: &m, ejected: map[balancer.SubConn]bool{a: true}}
	allocs := testing.AllocsPerRun(100, func() {
		res, _ := p.Pick(balancer.PickInfo{})
		if res.SubConn != b {
			t.Fatalf("picked %v, want the SubConn not ejected", res.SubConn)
		}
		res.Done(balancer.DoneInfo{})
	})
	if allocs != 0 {
		t.Errorf("%v allocations a pick, want 0", allocs)
	}
	if sa.okCalls.Load() != 0 || sb.okCalls.Load() < 100 {
		t.Errorf("counted %d on the ejected and %d on the other, want 0 and ≥ 100", sa.okCalls.Load(), sb.okCalls.Load())
	}
	p.ejected[b] = true
	if res, _ := p.Pick(balancer.PickInfo{}); res.SubConn == nil {
		t.Error("every SubConn ejected: no pick, want the child's")
	}
}
