package proxy

import (
	"strings"

	"google.golang.org/grpc/metadata"
)

// dropped reports whether header k belongs to one hop, or is one that gRPC
// sets itself on the next; pseudo-headers (":authority"…) are dropped by
// their prefix in forwarded. The deadline crosses as the context's
// deadline, not as grpc-timeout.
func dropped(k string) bool {
	switch k {
	case "content-type", "user-agent", "te", "host", "connection", "keep-alive", "proxy-connection",
		"transfer-encoding", "upgrade", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
		"grpc-status", "grpc-message":
		return true
	}
	return false
}

// forwarded returns the metadata of md that crosses the proxy: everything
// but pseudo-headers and the headers in dropped. Trace context
// (traceparent, tracestate, baggage) and application headers pass as they
// are. Values are never logged: they may hold credentials.
func forwarded(md metadata.MD) metadata.MD {
	out := make(metadata.MD, len(md))
	for k, v := range md {
		if strings.HasPrefix(k, ":") || dropped(k) {
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
