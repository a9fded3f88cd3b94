package lb

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/balancer"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestKindOf(t *testing.T) {
	var kinds kindCache
	for _, tc := range []struct {
		method          string
		unknownAsStream bool
		want            callKind
	}{
		{healthpb.Health_Check_FullMethodName, false, kindUnary},
		{healthpb.Health_Watch_FullMethodName, false, kindStream},
		{healthpb.Health_Check_FullMethodName, true, kindUnary},
		{"/svckit.test.Test/Sleep", false, kindUnknown},
		{"/svckit.test.Test/Sleep", true, kindStream},
		{"/grpc.health.v1.Health/Nope", false, kindUnknown},
		{"/grpc.health.v1.Health", false, kindUnknown},
		{"/grpc.health.v1.HealthCheckRequest/Check", false, kindUnknown},
		{"/grpc.health.v1.Health/" + strings.Repeat("x", maxMethodLen), false, kindUnknown},
	} {
		ctx := context.Background()
		if tc.unknownAsStream {
			ctx = WithUnknownAsStream(ctx)
		}
		if have := kinds.pickKind(balancer.PickInfo{FullMethodName: tc.method, Ctx: ctx}); have != tc.want {
			t.Errorf("%.60s (unknown as stream: %v): have kind %d, want %d", tc.method, tc.unknownAsStream, have, tc.want)
		}
	}
	if have := kinds.pickKind(balancer.PickInfo{FullMethodName: "/svckit.test.Test/Sleep"}); have != kindUnknown {
		t.Errorf("nil context: have kind %d, want unknown", have)
	}
}

// TestKindCacheHoldsNoUnknownNames sends 2,000 distinct unknown method
// names of 32 KiB each, as a client of a proxy may: before the fix the
// cache kept every one (2,000 entries, 78 MiB live); now it keeps none.
func TestKindCacheHoldsNoUnknownNames(t *testing.T) {
	var kinds kindCache
	entries := func() int {
		if m := kinds.m.Load(); m != nil {
			return len(*m)
		}
		return 0
	}
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	_ = kinds.kindOf(healthpb.Health_Watch_FullMethodName)
	wantEntries, before := entries(), heap()
	pad := strings.Repeat("m", 32<<10)
	for i := range 2000 {
		method := "/svckit.unknown.Svc" + strconv.Itoa(i) + "/" + pad
		if have := kinds.kindOf(method); have != kindUnknown {
			t.Fatalf("name %d: have kind %d, want unknown", i, have)
		}
	}
	grown := heap() - before
	t.Logf("after 2,000 names of 32 KiB: %d cache entries, heap %+d KiB", entries(), grown>>10)
	if have := entries(); have != wantEntries {
		t.Errorf("cache entries: have %d, want %d (unknown names cached)", have, wantEntries)
	}
	if grown > 8<<20 {
		t.Errorf("heap grew %d MiB, want < 8 MiB", grown>>20)
	}
}

// A pick of an unknown method, looked up each time, allocates nothing.
func TestKindOfUnknownAllocatesNothing(t *testing.T) {
	var kinds kindCache
	info := balancer.PickInfo{FullMethodName: "/svckit.unknown.Svc/Method", Ctx: WithUnknownAsStream(context.Background())}
	if have := testing.AllocsPerRun(100, func() { _ = kinds.pickKind(info) }); have != 0 {
		t.Errorf("pickKind of an unknown method: %v allocations, want 0", have)
	}
}
