package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// OutlierDetection configures outlier ejection, the design of gRFC A50 (as
// grpc-go's xDS "outlier_detection_experimental" policy and Envoy's
// OutlierDetection): every Interval, each endpoint's calls of the interval
// just ended are checked, and an endpoint whose failures stand out is left
// out of the picker for BaseEjectionTime times the number of times it has
// been ejected (a multiplier that one interval without ejection lowers by
// one), at most max(BaseEjectionTime, MaxEjectionTime). The field names and
// defaults are A50's, so that a config written for grpc-go or read from
// Envoy's means the same here.
//
// Unlike A50, which counts every error, a call counts as failed only when
// its status says the instance failed: Unavailable, Internal, Unknown or
// DataLoss. ResourceExhausted (an instance shedding load, see package
// overload) does not count, so that overload is steered rather than
// ejected; nor do application codes (NotFound, InvalidArgument, ...),
// DeadlineExceeded and Canceled, which say as much of the caller as of the
// instance (svckit_p2c_ewma steers away from slow instances).
//
// An ejected endpoint keeps its connection; it is only not picked. If every
// ready endpoint is ejected (MaxEjectionPercent 100), the picker uses them
// all rather than fail every call.
type OutlierDetection struct {
	// Interval between ejection sweeps; each sweep looks at the calls of the
	// interval just ended. Default 10s; must be positive.
	Interval time.Duration
	// BaseEjectionTime is how long an endpoint ejected for the first time
	// stays out; the n-th ejection in a row lasts n times as long. Default
	// 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length, unless BaseEjectionTime
	// is longer. Default 300s.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent: no endpoint is ejected while at least this
	// percentage of the endpoints is. Since the check comes before each
	// ejection, one endpoint can always be ejected unless it is 0. Default
	// 10; at most 100.
	MaxEjectionPercent uint32
	// SuccessRateEjection, if set, ejects endpoints whose success rate is
	// far below the mean of the others. Default unset (off).
	SuccessRateEjection *SuccessRateEjection
	// FailurePercentageEjection, if set, ejects endpoints whose failure
	// percentage exceeds a threshold. Default unset (off).
	FailurePercentageEjection *FailurePercentageEjection
}

// SuccessRateEjection ejects an endpoint whose success rate over an
// interval is below mean - stdev × StdevFactor/1000 of the success rates of
// the endpoints with RequestVolume calls or more, if there are at least
// MinimumHosts of them. The threshold is relative: among instances that
// all succeed, one stray failure may be enough, so it suits large fleets.
type SuccessRateEjection struct {
	// StdevFactor, in thousandths. Default 1900 (1.9 standard deviations).
	StdevFactor uint32 `json:"stdevFactor"`
	// EnforcementPercentage is the chance, in percent, that an endpoint
	// found an outlier is ejected. Default 100; at most 100.
	EnforcementPercentage uint32 `json:"enforcementPercentage"`
	// MinimumHosts with RequestVolume calls needed to judge any. Default 5.
	MinimumHosts uint32 `json:"minimumHosts"`
	// RequestVolume is the number of calls in an interval an endpoint needs
	// to be judged. Default 100.
	RequestVolume uint32 `json:"requestVolume"`
}

// FailurePercentageEjection ejects an endpoint whose failed calls over an
// interval are more than Threshold percent of its calls, if it made at
// least RequestVolume calls and at least MinimumHosts endpoints did.
type FailurePercentageEjection struct {
	// Threshold, in percent of calls. Default 85; at most 100.
	Threshold uint32 `json:"threshold"`
	// EnforcementPercentage is the chance, in percent, that an endpoint
	// over the threshold is ejected. Default 0, as in A50 and Envoy: set it
	// to turn this ejection on. At most 100.
	EnforcementPercentage uint32 `json:"enforcementPercentage"`
	// MinimumHosts with RequestVolume calls needed to judge any. Default 5.
	MinimumHosts uint32 `json:"minimumHosts"`
	// RequestVolume is the number of calls in an interval an endpoint needs
	// to be judged. Default 50.
	RequestVolume uint32 `json:"requestVolume"`
}

// DefaultOutlierDetection returns the outlier ejection svckit's clients
// use unless told otherwise: client.Dial's conns and the Clusters of
// svckit xds. (A config that leaves fields out gets A50's defaults, listed
// on each field, not these.) It is failure-percentage ejection, every 2s,
// of an endpoint with more than 25 % of at least 3 calls failed, if 3 or
// more endpoints had that many calls; for 30s the first time, 30s more each
// time in a row, at most 300s; no more than 10 % of the endpoints at once,
// but always one. An endpoint failing half its calls among three is
// ejected at the end of the first 2s interval in which it had 3 calls:
// with svckit_p2c_ewma, which already sends such an endpoint about one
// call a second, within about 4s. Success-rate ejection is off: it judges
// endpoints against each other, so among endpoints that all succeed one
// stray error can eject one.
func DefaultOutlierDetection() OutlierDetection {
	return OutlierDetection{
		Interval:           2 * time.Second,
		BaseEjectionTime:   30 * time.Second,
		MaxEjectionTime:    300 * time.Second,
		MaxEjectionPercent: 10,
		FailurePercentageEjection: &FailurePercentageEjection{
			Threshold:             25,
			EnforcementPercentage: 100,
			MinimumHosts:          3,
			RequestVolume:         3,
		},
	}
}

// Clone returns a copy of o that shares no pointer with it.
func (o OutlierDetection) Clone() OutlierDetection {
	if o.SuccessRateEjection != nil {
		o.SuccessRateEjection = new(*o.SuccessRateEjection)
	}
	if o.FailurePercentageEjection != nil {
		o.FailurePercentageEjection = new(*o.FailurePercentageEjection)
	}
	return o
}

// outlierWire is OutlierDetection as JSON: durations as protobuf JSON
// durations ("10s", "0.5s").
type outlierWire struct {
	Interval                  jsonDuration               `json:"interval"`
	BaseEjectionTime          jsonDuration               `json:"baseEjectionTime"`
	MaxEjectionTime           jsonDuration               `json:"maxEjectionTime"`
	MaxEjectionPercent        uint32                     `json:"maxEjectionPercent"`
	SuccessRateEjection       *SuccessRateEjection       `json:"successRateEjection,omitempty"`
	FailurePercentageEjection *FailurePercentageEjection `json:"failurePercentageEjection,omitempty"`
}

// UnmarshalJSON reads the A50 JSON config, filling A50's defaults for the
// fields it leaves out.
func (o *OutlierDetection) UnmarshalJSON(b []byte) error {
	w := outlierWire{
		Interval:           jsonDuration(10 * time.Second),
		BaseEjectionTime:   jsonDuration(30 * time.Second),
		MaxEjectionTime:    jsonDuration(300 * time.Second),
		MaxEjectionPercent: 10,
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*o = OutlierDetection{
		Interval:                  time.Duration(w.Interval),
		BaseEjectionTime:          time.Duration(w.BaseEjectionTime),
		MaxEjectionTime:           time.Duration(w.MaxEjectionTime),
		MaxEjectionPercent:        w.MaxEjectionPercent,
		SuccessRateEjection:       w.SuccessRateEjection,
		FailurePercentageEjection: w.FailurePercentageEjection,
	}
	return nil
}

// MarshalJSON writes o as the A50 JSON config.
func (o OutlierDetection) MarshalJSON() ([]byte, error) {
	return json.Marshal(outlierWire{
		Interval:                  jsonDuration(o.Interval),
		BaseEjectionTime:          jsonDuration(o.BaseEjectionTime),
		MaxEjectionTime:           jsonDuration(o.MaxEjectionTime),
		MaxEjectionPercent:        o.MaxEjectionPercent,
		SuccessRateEjection:       o.SuccessRateEjection,
		FailurePercentageEjection: o.FailurePercentageEjection,
	})
}

// UnmarshalJSON fills A50's defaults, then reads b over them.
func (s *SuccessRateEjection) UnmarshalJSON(b []byte) error {
	type plain SuccessRateEjection
	p := plain{StdevFactor: 1900, EnforcementPercentage: 100, MinimumHosts: 5, RequestVolume: 100}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = SuccessRateEjection(p)
	return nil
}

// UnmarshalJSON fills A50's defaults, then reads b over them.
func (f *FailurePercentageEjection) UnmarshalJSON(b []byte) error {
	type plain FailurePercentageEjection
	p := plain{Threshold: 85, EnforcementPercentage: 0, MinimumHosts: 5, RequestVolume: 50}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = FailurePercentageEjection(p)
	return nil
}

// Validate returns every invalid field of o, joined.
func (o *OutlierDetection) Validate() error {
	var errs []error
	if o.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", o.Interval))
	}
	if o.BaseEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("baseEjectionTime %s: must not be negative", o.BaseEjectionTime))
	}
	if o.MaxEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("maxEjectionTime %s: must not be negative", o.MaxEjectionTime))
	}
	percent := func(name string, v uint32) {
		if v > 100 {
			errs = append(errs, fmt.Errorf("%s %d: must be 0 to 100", name, v))
		}
	}
	percent("maxEjectionPercent", o.MaxEjectionPercent)
	if s := o.SuccessRateEjection; s != nil {
		percent("successRateEjection.enforcementPercentage", s.EnforcementPercentage)
	}
	if f := o.FailurePercentageEjection; f != nil {
		percent("failurePercentageEjection.threshold", f.Threshold)
		percent("failurePercentageEjection.enforcementPercentage", f.EnforcementPercentage)
	}
	return errors.Join(errs...)
}

// enabled reports whether o ejects at all: A50 runs no sweeps unless one
// of the two ejections is set.
func (o *OutlierDetection) enabled() bool {
	return o != nil && (o.SuccessRateEjection != nil || o.FailurePercentageEjection != nil)
}

// jsonDuration is a time.Duration as a protobuf JSON duration: seconds with
// an "s" suffix ("10s", "0.250s").
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64) + "s")
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"10s\"", b)
	}
	secs, ok := strings.CutSuffix(s, "s")
	f, err := strconv.ParseFloat(secs, 64)
	if !ok || err != nil || strings.Trim(secs, "0123456789.-") != "" {
		return fmt.Errorf("duration %q: want seconds with an s suffix, such as \"10s\" or \"0.5s\"", s)
	}
	if f > (1<<63-1)/float64(time.Second) || f < -(1<<63-1)/float64(time.Second) {
		return fmt.Errorf("duration %q: out of range", s)
	}
	*d = jsonDuration(time.Duration(f * float64(time.Second)))
	return nil
}
