package client

import (
	"encoding/json"
	"testing"

	"google.golang.org/grpc/balancer"

	"github.com/svckit/svckit/framework/lb"
)

// TestServiceConfigEjectsOutliers: the service config gives svckit's
// balancers the outlier detection of the options, which their ParseConfig
// reads back as it was, and gives none to another balancer.
func TestServiceConfigEjectsOutliers(t *testing.T) {
	custom := lb.DefaultOutlierDetection()
	custom.MaxEjectionPercent = 50
	for _, tc := range []struct {
		name string
		opts []Option
		want *lb.OutlierDetection
	}{
		{"default", nil, new(lb.DefaultOutlierDetection())},
		{"set", []Option{WithOutlierDetection(custom)}, &custom},
		{"off", []Option{WithoutOutlierDetection()}, nil},
		{"random", []Option{WithBalancer(lb.Random)}, new(lb.DefaultOutlierDetection())},
		{"grpc-go's", []Option{WithBalancer("round_robin")}, nil},
	} {
		o := newOptions(tc.opts)
		if err := o.validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sc, err := serviceConfig(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			LB []map[string]json.RawMessage `json:"loadBalancingConfig"`
		}
		if err := json.Unmarshal([]byte(sc), &v); err != nil {
			t.Fatal(err)
		}
		raw := v.LB[0][o.balancer]
		var have *lb.OutlierDetection
		if p, ok := balancer.Get(o.balancer).(balancer.ConfigParser); ok && o.balancer != "round_robin" {
			cfg, err := p.ParseConfig(raw)
			if err != nil {
				t.Fatalf("%s: %s does not parse %s: %v", tc.name, o.balancer, raw, err)
			}
			have = cfg.(*lb.Config).OutlierDetection
		} else if string(raw) != "{}" {
			t.Errorf("%s: config %s, want {}", tc.name, raw)
		}
		hb, _ := json.Marshal(have)
		wb, _ := json.Marshal(tc.want)
		if string(hb) != string(wb) {
			t.Errorf("%s: outlier detection %s, want %s", tc.name, hb, wb)
		}
	}
}

// TestWithOutlierDetectionCopies: the option keeps its own copy, so a
// caller changing its value after does not change the conns' config.
func TestWithOutlierDetectionCopies(t *testing.T) {
	od := lb.DefaultOutlierDetection()
	o := newOptions([]Option{WithOutlierDetection(od)})
	od.FailurePercentageEjection.Threshold = 99
	if have := o.outlier.FailurePercentageEjection.Threshold; have != 25 {
		t.Errorf("threshold %d after the caller's change, want 25", have)
	}
}
