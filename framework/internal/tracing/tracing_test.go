package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOnlyWithAProvider: no provider, no interceptors; any provider given,
// the global's delegate included, traces.
func TestOnlyWithAProvider(t *testing.T) {
	if New(nil) != nil {
		t.Fatal("New(nil) returned interceptors: tracing must be off without a provider")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	i := New(tp)
	_, err := i.UnaryServer()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/p.S/M"},
		func(context.Context, any) (any, error) { return nil, status.Error(codes.Unavailable, "x") })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v", err)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "p.S/M" {
		t.Fatalf("spans %v, want one p.S/M", spans)
	}
	for _, kv := range spans[0].Attributes() {
		if kv.Key == "rpc.response.status_code" && kv.Value.AsString() != "UNAVAILABLE" {
			t.Fatalf("status code attribute %q", kv.Value.AsString())
		}
	}
}
