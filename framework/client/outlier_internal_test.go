package client

import (
	"encoding/json"
	"strings"
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
		{"off", []Option{WithOutlierDetection(lb.OutlierDetection{})}, nil},
		{"random", []Option{WithBalancer(lb.Random)}, new(lb.DefaultOutlierDetection())},
		{"grpc-go's", []Option{WithBalancer("round_robin")}, new(lb.DefaultOutlierDetection())},
		{"grpc-go's, off", []Option{WithBalancer("round_robin"), WithOutlierDetection(lb.OutlierDetection{})}, nil},
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
		name, raw := o.balancer, v.LB[0][o.balancer]
		if o.balancer == "round_robin" && tc.want != nil {
			name, raw = lb.OutlierDetectionPolicy, v.LB[0][lb.OutlierDetectionPolicy]
			if !strings.Contains(string(raw), `"childPolicy":[{"round_robin":{}}]`) {
				t.Errorf("%s: config %s, want round_robin as the child policy", tc.name, raw)
			}
		}
		var have *lb.OutlierDetection
		switch name {
		case "round_robin":
			if string(raw) != "{}" {
				t.Errorf("%s: config %s, want {}", tc.name, raw)
			}
		default:
			cfg, err := balancer.Get(name).(balancer.ConfigParser).ParseConfig(raw)
			if err != nil {
				t.Fatalf("%s: %s does not parse %s: %v", tc.name, name, raw, err)
			}
			if c, ok := cfg.(*lb.Config); ok {
				have = c.OutlierDetection
				break
			}
			var od lb.OutlierDetection
			if err := json.Unmarshal(raw, &od); err != nil {
				t.Fatal(err)
			}
			have = &od
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
