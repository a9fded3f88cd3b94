package proxy

import (
	"strings"

	"google.golang.org/grpc/metadata"
)

// dropped are the headers that belong to one hop, or that gRPC sets itself
// on the next: pseudo-headers (":authority"…) are dropped by their prefix.
// The deadline crosses as the context's deadline, not as grpc-timeout.
var dropped = map[string]bool{
	"content-type":         true,
	"user-agent":           true,
	"te":                   true,
	"host":                 true,
	"connection":           true,
	"keep-alive":           true,
	"proxy-connection":     true,
	"transfer-encoding":    true,
	"upgrade":              true,
	"grpc-timeout":         true,
	"grpc-encoding":        true,
	"grpc-accept-encoding": true,
	"grpc-status":          true,
	"grpc-message":         true,
}

// forwarded returns the metadata of md that crosses the proxy: everything
// but pseudo-headers and the headers in dropped. Trace context
// (traceparent, tracestate, baggage) and application headers pass as they
// are. Values are never logged: they may hold credentials.
func forwarded(md metadata.MD) metadata.MD {
	out := make(metadata.MD, len(md))
	for k, v := range md {
		if strings.HasPrefix(k, ":") || dropped[k] {
			continue
		}
		out[k] = v
	}
	return out
}

// contentSubtype returns the subtype of a gRPC content type
// ("application/grpc+json" → "json"), or "" for none.
func contentSubtype(md metadata.MD) string {
	v := md.Get("content-type")
	if len(v) == 0 {
		return ""
	}
	rest, ok := strings.CutPrefix(strings.ToLower(v[0]), "application/grpc+")
	if !ok {
		return ""
	}
	sub, _, _ := strings.Cut(rest, ";")
	return strings.TrimSpace(sub)
}
