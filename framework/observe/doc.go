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
