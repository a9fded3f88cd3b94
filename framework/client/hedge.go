package client

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// hedger sends a unary call of an idempotent method again when it has no
// answer after a delay, up to a number of attempts in all, and returns the
// first answer: gRPC's hedging policy (gRFC A6), which grpc-go parses but
// does not carry out. An attempt that fails with UNAVAILABLE or
// RESOURCE_EXHAUSTED sends the next at once; any other answer ends the
// call, and the attempts still out are cancelled. Each attempt is a call
// of its own to the balancer, which picks again, and gRPC may retry it.
//
// A budget bounds the hedges of a conn: every call adds a tenth of a
// token, up to 10, and a hedge costs one, so that over time at most one
// call in ten is hedged, in bursts of at most ten: a slow fleet is not
// sent twice its load.
type hedger struct {
	delay    time.Duration
	attempts int
	hedged   func(method string) bool

	mu     sync.Mutex
	tokens float64
}

// newHedger hedges the methods of names (WithIdempotent's form, validated:
// "pkg.Svc" or "/pkg.Svc/Method") and of byContract.
func newHedger(h hedging, names []string, byContract [][2]string) *hedger {
	services, methods := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		svc, method, _ := splitIdempotent(n)
		if method == "" {
			services[svc] = true
		} else {
			methods["/"+svc+"/"+method] = true
		}
	}
	for _, m := range byContract {
		methods["/"+m[0]+"/"+m[1]] = true
	}
	return &hedger{delay: h.delay, attempts: h.attempts, tokens: 10, hedged: func(method string) bool {
		svc, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
		return methods[method] || services[svc]
	}}
}

// spend takes a token for a hedge, if there is one.
func (h *hedger) spend() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tokens < 1 {
		return false
	}
	h.tokens--
	return true
}

func (h *hedger) earn() {
	h.mu.Lock()
	h.tokens = min(10, h.tokens+0.1)
	h.mu.Unlock()
}

// attempt is the answer of one attempt: its reply message and error.
type attempt struct {
	reply proto.Message
	err   error
}

// writesBack reports whether opts hold an option that writes what an
// attempt saw into the caller's variables (its header, trailer, peer) or
// calls back when it ends: attempts would write them at once, and the one
// that lost after the call returned. Such a call is not hedged.
func writesBack(opts []grpc.CallOption) bool {
	for _, o := range opts {
		switch o.(type) {
		case grpc.HeaderCallOption, *grpc.HeaderCallOption, grpc.TrailerCallOption, *grpc.TrailerCallOption,
			grpc.PeerCallOption, *grpc.PeerCallOption, grpc.OnFinishCallOption, *grpc.OnFinishCallOption:
			return true
		}
	}
	return false
}

// unary is the hedging interceptor.
func (h *hedger) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	out, ok := reply.(proto.Message)
	if !ok || !h.hedged(method) || writesBack(opts) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	h.earn()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the attempts still out
	answers := make(chan attempt, h.attempts)
	send := func() {
		r := out.ProtoReflect().New().Interface() // attempts must not share a reply
		go func() { answers <- attempt{r, invoker(ctx, method, req, r, cc, opts...)} }()
	}
	send()
	sent, pending := 1, 1
	timer := time.NewTimer(h.delay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			if sent < h.attempts && h.spend() {
				send()
				sent, pending = sent+1, pending+1
				timer.Reset(h.delay)
			}
			continue
		case a := <-answers:
			pending--
			if c := status.Code(a.err); (c == codes.Unavailable || c == codes.ResourceExhausted) && ctx.Err() == nil {
				if sent < h.attempts && h.spend() {
					send()
					sent, pending = sent+1, pending+1
					continue
				}
				if pending > 0 {
					continue // another attempt may yet answer
				}
			}
			if a.err == nil {
				proto.Reset(out)
				proto.Merge(out, a.reply)
			}
			return a.err
		}
	}
}
