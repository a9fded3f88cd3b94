// Package observe builds OpenTelemetry tracing from the standard OTEL_*
// environment variables, for a service's main to hand to framework.New
// (framework.WithTracerProvider) and to its client.Client
// (client.WithTracerProvider).
//
// The exporter comes from go.opentelemetry.io/contrib/exporters/autoexport
// (OTEL_TRACES_EXPORTER: otlp, console, none; OTEL_EXPORTER_OTLP_* for
// OTLP), the sampler from the SDK (OTEL_TRACES_SAMPLER, …_ARG), the resource
// from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, and the propagator
// from go.opentelemetry.io/contrib/propagators/autoprop (OTEL_PROPAGATORS,
// default W3C trace context and baggage). Nothing is hand-parsed.
//
// One departure from the OTel default: with neither OTEL_TRACES_EXPORTER
// nor an OTLP endpoint set, tracing is off (no provider), so that a service
// without a collector pays nothing and logs no export errors.
//
// The package sets no globals; main may (otel.SetTextMapPropagator).
// Metrics are the App's Prometheus registry, and are left out here.
package observe

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is a service's tracing set-up.
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
}

// NewTracing reads the OTEL_* variables and returns the tracing they
// describe for service (OTEL_SERVICE_NAME wins over it). An invalid
// variable is an error naming it.
func NewTracing(ctx context.Context, service string) (*Tracing, error) {
	t := &Tracing{propagator: autoprop.NewTextMapPropagator()}
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return t, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe: OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return t, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("observe: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return t, nil
}

// TracerProvider returns the provider, or nil when tracing is off (the
// framework then installs no tracing at all).
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t.provider == nil {
		return nil
	}
	return t.provider
}

// Propagator returns the propagator OTEL_PROPAGATORS names.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.propagator }

// Shutdown flushes and stops the exporter; call it when main ends.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("observe: shutdown: %w", err)
	}
	return nil
}
