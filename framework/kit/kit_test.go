package kit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/ratelimit"
	"github.com/sony/gobreaker"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/framework/kit"
	"github.com/svckit/svckit/internal/logsink"
)

var errBoom = errors.New("boom: secret path /etc/shadow")

// counted returns an endpoint that counts its calls and echoes, or fails
// with errBoom while fail is set.
func counted(calls *atomic.Int64, fail *atomic.Bool) endpoint.Endpoint {
	return func(_ context.Context, req any) (any, error) {
		calls.Add(1)
		if fail.Load() {
			return nil, errBoom
		}
		return req, nil
	}
}

// slow returns an endpoint that answers after d unless ctx ends first.
func slow(d time.Duration) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return req, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func TestEcho(t *testing.T) {
	cc := startEcho(t, func(_ context.Context, req any) (any, error) { return "echo " + req.(string), nil })
	have, err := echoClient(cc)(t.Context(), "hi")
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	if want := "echo hi"; have != want {
		t.Errorf("echo: want %q, have %q", want, have)
	}
}

func TestTimeout(t *testing.T) {
	t.Run("server side", func(t *testing.T) {
		cc := startEcho(t, kit.Timeout(50*time.Millisecond)(slow(time.Minute)))
		start := time.Now()
		_, err := echoClient(cc)(t.Context(), "x")
		if want, have := codes.DeadlineExceeded, status.Code(err); want != have {
			t.Fatalf("code: want %s, have %s (%v)", want, have, err)
		}
		if want := "kit: timeout after 50ms"; !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("message: want it to contain %q, have %q", want, status.Convert(err).Message())
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s: the timeout did not fire", d)
		}
	})
	t.Run("client side", func(t *testing.T) {
		cc := startEcho(t, slow(time.Minute))
		_, err := kit.Timeout(50*time.Millisecond)(echoClient(cc))(t.Context(), "x")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("errors.Is(%v, context.DeadlineExceeded) = false", err)
		}
		if want, have := codes.DeadlineExceeded, status.Code(kit.GRPCStatus(err)); want != have {
			t.Errorf("GRPCStatus code: want %s, have %s", want, have)
		}
	})
	t.Run("in time", func(t *testing.T) {
		cc := startEcho(t, slow(0))
		have, err := kit.Timeout(5*time.Second)(echoClient(cc))(t.Context(), "x")
		if err != nil || have != "x" {
			t.Errorf("want x, <nil>; have %v, %v", have, err)
		}
	})
}

// TestTimeoutCause checks which errors Timeout claims as its own.
func TestTimeoutCause(t *testing.T) {
	late := func(err error) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			<-ctx.Done()
			return "late", err
		}
	}
	for _, tc := range []struct {
		name     string
		e        endpoint.Endpoint
		parent   time.Duration // the caller's own timeout; 0 means none
		wantResp any
		wantIs   []error
		wantMsg  string
	}{
		{name: "fast", e: slow(0), wantResp: "x"},
		{name: "slow", e: slow(time.Minute), wantIs: []error{context.DeadlineExceeded},
			wantMsg: "kit: timeout after 20ms: context deadline exceeded"},
		{name: "other error after deadline", e: late(errBoom), wantIs: []error{context.DeadlineExceeded, errBoom},
			wantMsg: "kit: timeout after 20ms: context deadline exceeded: " + errBoom.Error()},
		{name: "late success", e: late(nil), wantResp: "late"},
		{name: "caller's deadline first", e: slow(time.Minute), parent: time.Millisecond,
			wantIs: []error{context.DeadlineExceeded}, wantMsg: "context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.parent > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.parent)
				defer cancel()
			}
			have, err := kit.Timeout(20*time.Millisecond)(tc.e)(ctx, "x")
			if have != tc.wantResp {
				t.Errorf("response: want %v, have %v", tc.wantResp, have)
			}
			if (err == nil) != (tc.wantIs == nil) {
				t.Fatalf("error: want one wrapping %v, have %v", tc.wantIs, err)
			}
			for _, target := range tc.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			if err != nil && err.Error() != tc.wantMsg {
				t.Errorf("message: want %q, have %q", tc.wantMsg, err.Error())
			}
		})
	}
}

func TestCircuitBreaker(t *testing.T) {
	t.Run("opens and fails fast", testBreakerOpensAndFailsFast)
	t.Run("half-open closes on success", testBreakerHalfOpenClosesOnSuccess)
	t.Run("caller errors do not count", testBreakerIgnoresCallerErrors)
}

func testBreakerOpensAndFailsFast(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Bool
	fail.Store(true)
	cc := startEcho(t, counted(&calls, &fail))
	e := kit.CircuitBreaker("echo", kit.WithFailures(3), kit.WithOpenTimeout(time.Hour))(echoClient(cc))
	for i, step := range []struct {
		name      string
		wantOpen  bool
		wantCalls int64
	}{
		{"failure 1", false, 1},
		{"failure 2", false, 2},
		{"failure 3 opens", false, 3},
		{"open", true, 3},
		{"still open", true, 3},
	} {
		_, err := e(t.Context(), "x")
		if err == nil {
			t.Fatalf("step %d (%s): want an error, have none", i, step.name)
		}
		if have := errors.Is(err, gobreaker.ErrOpenState); have != step.wantOpen {
			t.Errorf("step %d (%s): errors.Is(%v, ErrOpenState): want %v, have %v", i, step.name, err, step.wantOpen, have)
		}
		if !step.wantOpen && status.Code(err) != codes.Internal {
			t.Errorf("step %d (%s): want the server's Internal error, have %v", i, step.name, err)
		}
		if step.wantOpen && !strings.HasPrefix(err.Error(), "kit: breaker echo: ") {
			t.Errorf("step %d (%s): want the error to name the breaker, have %q", i, step.name, err)
		}
		if want, have := step.wantCalls, calls.Load(); want != have {
			t.Errorf("step %d (%s): server calls: want %d, have %d", i, step.name, want, have)
		}
	}
}

func testBreakerHalfOpenClosesOnSuccess(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Bool
	fail.Store(true)
	cc := startEcho(t, counted(&calls, &fail))
	logs := &logsink.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	e := kit.CircuitBreaker("echo",
		kit.WithFailures(1), kit.WithOpenTimeout(20*time.Millisecond), kit.WithBreakerLogger(logger),
	)(echoClient(cc))
	if _, err := e(t.Context(), "x"); status.Code(err) != codes.Internal {
		t.Fatalf("failure: want Internal, have %v", err)
	}
	fail.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e(t.Context(), "x")
		if err == nil {
			break
		}
		if !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("while open: want ErrOpenState, have %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("breaker still open after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if want, have := int64(2), calls.Load(); want != have {
		t.Errorf("server calls: want %d (failure, trial), have %d", want, have)
	}
	for _, want := range []string{
		"level=WARN msg=\"circuit breaker state change\" breaker=echo from=closed to=open",
		"level=INFO msg=\"circuit breaker state change\" breaker=echo from=open to=half-open",
		"level=INFO msg=\"circuit breaker state change\" breaker=echo from=half-open to=closed",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log: want a line with %q, have:\n%s", want, logs)
		}
	}
}

func testBreakerIgnoresCallerErrors(t *testing.T) {
	cc := startEcho(t, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.InvalidArgument, "bad request")
	})
	callerErr := func(err error) bool { return err == nil || status.Code(err) == codes.InvalidArgument }
	e := kit.CircuitBreaker("echo", kit.WithFailures(1), kit.WithIsSuccessful(callerErr))(echoClient(cc))
	for i := range 3 {
		if _, err := e(t.Context(), "x"); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("call %d: want InvalidArgument, have %v", i, err)
		}
	}
}

func TestRateLimit(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Bool
	cc := startEcho(t, counted(&calls, &fail))
	e := kit.RateLimit(rate.Every(time.Hour), 3)(echoClient(cc))
	for i, step := range []struct {
		wantErr   error
		wantCalls int64
	}{
		{nil, 1},
		{nil, 2},
		{nil, 3},
		{ratelimit.ErrLimited, 3},
		{ratelimit.ErrLimited, 3},
	} {
		_, err := e(t.Context(), "x")
		if !errors.Is(err, step.wantErr) || (step.wantErr == nil) != (err == nil) {
			t.Errorf("call %d: want %v, have %v", i, step.wantErr, err)
		}
		if want, have := step.wantCalls, calls.Load(); want != have {
			t.Errorf("call %d: server calls: want %d, have %d", i, want, have)
		}
	}
}

func TestLogging(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Bool
	cc := startEcho(t, counted(&calls, &fail))
	logs := &logsink.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := kit.Logging(logger, "Echo")(echoClient(cc))

	if _, err := e(t.Context(), "x"); err != nil {
		t.Fatalf("success: %v", err)
	}
	fail.Store(true)
	if _, err := e(t.Context(), "x"); err == nil {
		t.Fatal("failure: want an error, have none")
	}

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, have %d:\n%s", len(lines), logs)
	}
	for i, want := range []struct{ level, msg, err string }{
		{"DEBUG", "call", ""},
		{"WARN", "call failed", "rpc error: code = Internal desc = internal error"},
	} {
		var have struct {
			Level, Msg, Endpoint, Err string
			Duration                  *int64
		}
		if err := json.Unmarshal([]byte(lines[i]), &have); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, lines[i])
		}
		if have.Level != want.level || have.Msg != want.msg || have.Endpoint != "Echo" || have.Err != want.err {
			t.Errorf("line %d: want level %s msg %q endpoint Echo err %q, have %s", i, want.level, want.msg, want.err, lines[i])
		}
		if have.Duration == nil || *have.Duration <= 0 {
			t.Errorf("line %d: want a positive duration, have %s", i, lines[i])
		}
	}

	t.Run("nil logger", func(t *testing.T) {
		have, err := kit.Logging(nil, "Echo")(echoClient(cc))(t.Context(), "x")
		if status.Code(err) != codes.Internal || have != nil {
			t.Errorf("want the endpoint's own result, have %v, %v", have, err)
		}
	})
}

// TestEdgeCodes checks what a client sees of the server's middleware.
func TestEdgeCodes(t *testing.T) {
	failing := func(context.Context, any) (any, error) { return nil, errBoom }
	for _, tc := range []struct {
		name  string
		e     endpoint.Endpoint
		calls int // the last one is checked
		code  codes.Code
		msg   string
	}{
		{"unknown error", failing, 1, codes.Internal, "internal error"},
		{"breaker open", kit.CircuitBreaker("echo", kit.WithFailures(1))(failing), 2, codes.Unavailable,
			"kit: breaker echo: circuit breaker is open"},
		{"rate limited", kit.RateLimit(0, 1)(slow(0)), 2, codes.ResourceExhausted, "rate limit exceeded"},
		{"timeout", kit.Timeout(20 * time.Millisecond)(slow(time.Minute)), 1, codes.DeadlineExceeded,
			"kit: timeout after 20ms: context deadline exceeded"},
		{"status", func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no such key") },
			1, codes.NotFound, "no such key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := echoClient(startEcho(t, tc.e))
			var err error
			for range tc.calls {
				_, err = e(t.Context(), "x")
			}
			s := status.Convert(err)
			if s.Code() != tc.code || s.Message() != tc.msg {
				t.Errorf("want %s %q, have %s %q", tc.code, tc.msg, s.Code(), s.Message())
			}
		})
	}
}

func TestGRPCStatus(t *testing.T) {
	notFound := status.Error(codes.NotFound, "no such key")
	timedOut := func() error {
		_, err := kit.Timeout(time.Millisecond)(slow(time.Minute))(t.Context(), "x")
		return err
	}()
	open := func() error {
		e := kit.CircuitBreaker("db", kit.WithFailures(1))(func(context.Context, any) (any, error) { return nil, errBoom })
		_, _ = e(t.Context(), nil)
		_, err := e(t.Context(), nil)
		return err
	}()
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
		same bool // GRPCStatus returns err itself
	}{
		{name: "nil", err: nil, code: codes.OK, same: true},
		{name: "breaker open", err: open, code: codes.Unavailable, msg: "kit: breaker db: circuit breaker is open"},
		{name: "breaker half-open", err: gobreaker.ErrTooManyRequests, code: codes.Unavailable, msg: "too many requests"},
		{name: "rate limited", err: ratelimit.ErrLimited, code: codes.ResourceExhausted, msg: "rate limit exceeded"},
		{name: "timeout", err: timedOut, code: codes.DeadlineExceeded, msg: "kit: timeout after 1ms: context deadline exceeded"},
		{name: "deadline", err: context.DeadlineExceeded, code: codes.DeadlineExceeded, msg: "context deadline exceeded"},
		{name: "canceled", err: fmt.Errorf("read: %w", context.Canceled), code: codes.Canceled, msg: "read: context canceled"},
		{name: "status", err: notFound, code: codes.NotFound, msg: "no such key", same: true},
		{name: "wrapped status", err: fmt.Errorf("get: %w", notFound), code: codes.NotFound,
			msg: "get: rpc error: code = NotFound desc = no such key", same: true},
		{name: "unknown", err: errBoom, code: codes.Internal, msg: "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have := kit.GRPCStatus(tc.err)
			if tc.same && have != tc.err {
				t.Errorf("want the error itself, have %v", have)
			}
			s := status.Convert(have)
			if s.Code() != tc.code || s.Message() != tc.msg {
				t.Errorf("want %s %q, have %s %q", tc.code, tc.msg, s.Code(), s.Message())
			}
			var gs interface{ GRPCStatus() *status.Status }
			if tc.err != nil && !errors.As(have, &gs) {
				t.Errorf("errors.As(%v, GRPCStatus) = false", have)
			}
		})
	}

	// The middleware's errors wrap the sentinels callers branch on.
	for _, tc := range []struct {
		name   string
		err    error
		target error
	}{
		{"breaker", open, gobreaker.ErrOpenState},
		{"timeout", timedOut, context.DeadlineExceeded},
	} {
		if !errors.Is(tc.err, tc.target) {
			t.Errorf("%s: errors.Is(%v, %v) = false", tc.name, tc.err, tc.target)
		}
	}
}
