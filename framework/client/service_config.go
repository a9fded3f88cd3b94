package client

import (
	"encoding/json"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/svckit/svckit/framework/lb"
)

// serviceConfig builds the default service config of a conn: the
// balancer, health checking, the retry policy of the health service's
// Check, of byContract (see idempotentByContract) and of o's WithIdempotent
// names, which validate has checked, and the conn's retry budget.
//
// A retry is one of at most three attempts, on UNAVAILABLE (the instance
// is gone or going) or RESOURCE_EXHAUSTED (an instance shedding load
// before any handler work, see package overload): the balancer picks again,
// and steers away from the instance that failed. gRPC's retry throttling
// budgets the retries of a conn: every attempt that fails with a retryable
// code costs a token of 100, every call that succeeds returns 0.1,
// and no retry is made once 50 or fewer would be left: a burst of about 50
// retries (the calls in flight on an instance killed at once), then, in an
// outage of every instance, about one attempt a call, not three. gRPC
// refills the budget on every resolver update.
func serviceConfig(o options, byContract [][2]string) (string, error) {
	retry := map[string]any{
		"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "1s", "backoffMultiplier": 2,
		"retryableStatusCodes": []string{"UNAVAILABLE", "RESOURCE_EXHAUSTED"},
	}
	health := []methodName{{Service: healthpb.Health_ServiceDesc.ServiceName, Method: "Check"}}
	var names []methodName
	for _, m := range byContract {
		names = append(names, methodName{Service: m[0], Method: m[1]})
	}
	for _, n := range o.idempotent {
		svc, method, err := splitIdempotent(n)
		if err != nil {
			return "", err
		}
		names = append(names, methodName{Service: svc, Method: method})
	}
	sc := map[string]any{
		"loadBalancingConfig": []map[string]any{balancerConfig(o)},
		"healthCheckConfig":   map[string]any{"serviceName": ""},
		"methodConfig":        []map[string]any{{"name": append(health, names...), "retryPolicy": retry}},
		"retryThrottling":     map[string]any{"maxTokens": 100, "tokenRatio": 0.1},
	}
	b, err := json.Marshal(sc)
	return string(b), err
}

// methodName names a method, or with no Method a service, in a method
// config.
type methodName struct {
	Service string `json:"service,omitempty"`
	Method  string `json:"method,omitempty"`
}

// balancerConfig is the loadBalancingConfig entry of o's balancer: with
// o's outlier detection, in the config of svckit's balancers, or around
// another (lb.OutlierDetectionPolicy with it as the child policy).
func balancerConfig(o options) map[string]any {
	switch {
	case o.outlier == nil:
		return map[string]any{o.balancer: map[string]any{}}
	case o.balancer == lb.P2CEWMA, o.balancer == lb.WeightedRoundRobin, o.balancer == lb.Random, o.balancer == lb.ConsistentHash:
		return map[string]any{o.balancer: map[string]any{"outlierDetection": o.outlier}}
	}
	return map[string]any{lb.OutlierDetectionPolicy: wrapped{o.outlier, []map[string]any{{o.balancer: map[string]any{}}}}}
}

// wrapped is the config of lb.OutlierDetectionPolicy: an outlier
// detection's fields and the child policy.
type wrapped struct {
	od    *lb.OutlierDetection
	child []map[string]any
}

func (w wrapped) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(w.od)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["childPolicy"] = w.child
	return json.Marshal(m)
}

// idempotentByContract lists the methods of every protobuf service linked
// into the program whose proto says idempotency_level IDEMPOTENT or
// NO_SIDE_EFFECTS: safe to retry by their own contract. New calls it once
// per Client; the registry is complete once the program's init has run.
func idempotentByContract() [][2]string {
	var out [][2]string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := range svcs.Len() {
			sd := svcs.Get(i)
			ms := sd.Methods()
			for j := range ms.Len() {
				md := ms.Get(j)
				opts, ok := md.Options().(*descriptorpb.MethodOptions)
				if !ok {
					continue
				}
				switch opts.GetIdempotencyLevel() {
				case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
					out = append(out, [2]string{string(sd.FullName()), string(md.Name())})
				}
			}
		}
		return true
	})
	return out
}
