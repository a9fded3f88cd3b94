package observe_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/svckit/svckit/framework/observe"
	"github.com/svckit/svckit/internal/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is a real OTLP/gRPC trace receiver on 127.0.0.1.
type collector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []string // "service/span"
}

func (c *collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				svc = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, svc+"/"+s.GetName())
			}
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (c *collector) have() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

func TestOTLPFromEnvironment(t *testing.T) {
	c := &collector{}
	srvAddr := serveCollector(t, c)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+srvAddr)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := observe.NewTracing(ctx, "from-code")
	if err != nil {
		t.Fatal(err)
	}
	tp := tr.TracerProvider()
	if tp == nil {
		t.Fatal("tracing off with an OTLP exporter configured")
	}
	_, span := tp.Tracer("test").Start(ctx, "hello")
	span.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "span exported", func() bool { return slices.Contains(c.have(), "from-env/hello") })
}

func TestTracingOffWithoutExporter(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := observe.NewTracing(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	if tr.TracerProvider() != nil {
		t.Fatal("tracing on with nothing configured")
	}
	if f := tr.Propagator().Fields(); !slices.Contains(f, "traceparent") || !slices.Contains(f, "baggage") {
		t.Fatalf("default propagator fields %v, want W3C trace context and baggage", f)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	if tr, err := observe.NewTracing(context.Background(), "svc"); err != nil || tr.TracerProvider() != nil {
		t.Fatalf("OTEL_TRACES_EXPORTER=none: %v, provider %v", err, tr.TracerProvider())
	}
}

func TestInvalidExporterIsAnError(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
	if _, err := observe.NewTracing(context.Background(), "svc"); err == nil {
		t.Fatal("unknown exporter: have nil error")
	}
}

func TestPropagatorsFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_PROPAGATORS", "b3")
	tr, err := observe.NewTracing(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	if f := tr.Propagator().Fields(); slices.Contains(f, "traceparent") {
		t.Fatalf("OTEL_PROPAGATORS=b3 gave fields %v", f)
	}
}

func serveCollector(t *testing.T, c *collector) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(s, c)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}
