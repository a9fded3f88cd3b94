package xds

import (
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/lb"
)

// TestClusterOutlierDetection: the Cluster carries the options' outlier
// detection as Envoy's fields, with the ejection left unset enforced at 0
// (off, for gRPC and Envoy alike), and none without it.
func TestClusterOutlierDetection(t *testing.T) {
	od := DefaultOutlierDetection()
	c, err := cluster("svc", false, &od)
	if err != nil {
		t.Fatal(err)
	}
	have := c.GetOutlierDetection()
	for _, tc := range []struct {
		name       string
		have, want any
	}{
		{"interval", have.GetInterval().AsDuration(), 2 * time.Second},
		{"base ejection time", have.GetBaseEjectionTime().AsDuration(), 30 * time.Second},
		{"max ejection time", have.GetMaxEjectionTime().AsDuration(), 300 * time.Second},
		{"max ejection percent", have.GetMaxEjectionPercent().GetValue(), uint32(10)},
		{"failure percentage threshold", have.GetFailurePercentageThreshold().GetValue(), uint32(85)},
		{"enforcing failure percentage", have.GetEnforcingFailurePercentage().GetValue(), uint32(100)},
		{"failure percentage minimum hosts", have.GetFailurePercentageMinimumHosts().GetValue(), uint32(3)},
		{"failure percentage request volume", have.GetFailurePercentageRequestVolume().GetValue(), uint32(3)},
		{"enforcing success rate set", have.GetEnforcingSuccessRate() != nil, true},
		{"enforcing success rate", have.GetEnforcingSuccessRate().GetValue(), uint32(0)},
		{"enforcing consecutive 5xx", have.GetEnforcingConsecutive_5Xx().GetValue(), uint32(0)},
	} {
		if tc.have != tc.want {
			t.Errorf("%s: have %v, want %v", tc.name, tc.have, tc.want)
		}
	}
	if c, _ := cluster("svc", false, nil); c.GetOutlierDetection() != nil {
		t.Errorf("without outlier detection: have %v, want nil", c.GetOutlierDetection())
	}
}

func TestNewRefusesAnInvalidOutlierDetection(t *testing.T) {
	od := lb.DefaultOutlierDetection()
	od.MaxEjectionPercent = 101
	if _, err := New(nil, WithOutlierDetection(od)); err == nil || !strings.Contains(err.Error(), "xds: outlier detection: maxEjectionPercent 101") {
		t.Errorf("have %v, want an error naming maxEjectionPercent", err)
	}
	s, err := New(nil, WithoutOutlierDetection())
	if err != nil || s.opts.outlier != nil {
		t.Errorf("WithoutOutlierDetection: have %v, outlier %v", err, s.opts.outlier)
	}
}
