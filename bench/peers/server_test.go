package peers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/go-kratos/aegis/ratelimit"
	"github.com/go-kratos/aegis/ratelimit/bbr"
	"github.com/zeromicro/go-zero/core/load"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/svckit/svckit/framework"
	"github.com/svckit/svckit/framework/naming"
	"github.com/svckit/svckit/framework/overload"
)

// The protections the server can run with, by the name the child is
// given in serverEnv.
const (
	none   = "none"
	goZero = "go-zero"
	kratos = "kratos"
	svckit = "svckit"
)

// Environment of the child: serverEnv names the protection and makes the
// test binary a server; itersEnv is the loop count of 1 ms of CPU;
// cgroupEnv, if set, is the root under which svckit's limiter reads the
// cgroup files (overload.WithCgroupRoot).
const (
	serverEnv = "SHEDBENCH_SERVER"
	itersEnv  = "SHEDBENCH_ITERS"
	cgroupEnv = "SHEDBENCH_CGROUP_ROOT"
)

// burnMethod is the one method of the benchmark's service.
const burnMethod = "/svckit.bench.Burn/Burn"

// burnDesc is a service of one unary method, Burn, that spins for iters
// rounds of a calibrated loop (1 ms of CPU) and answers an empty message.
func burnDesc(iters int) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "svckit.bench.Burn",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Burn", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(emptypb.Empty)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { spin(iters); return &emptypb.Empty{}, nil }
			if in == nil {
				return h(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: burnMethod}, h)
		}}},
	}
}

// sink keeps the compiler from dropping spin's loop.
var sink atomic.Uint64

// spin runs n rounds of a loop that neither allocates nor yields: CPU
// work, as a handler that computes does.
func spin(n int) {
	x := uint64(1)
	for range n {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink.Store(x)
}

// runServer is the child: one framework.App on 127.0.0.1 with the burn
// service and the protection named by serverEnv, registered nowhere. It
// logs the App's "serving" line and runs until SIGTERM.
func runServer() error {
	iters, err := strconv.Atoi(os.Getenv(itersEnv))
	if err != nil || iters <= 0 {
		return fmt.Errorf("%s=%q: want a positive count", itersEnv, os.Getenv(itersEnv))
	}
	cfg := framework.DefaultConfig()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	opts := []framework.Option{
		framework.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))),
		framework.WithPropagationDelay(0),
		framework.WithRegistrar(func(naming.Instance) (framework.Registrar, error) { return nopRegistrar{}, nil }),
	}
	switch p := os.Getenv(serverEnv); p {
	case svckit: // the App's default: --overload-cpu 0.8
		if root := os.Getenv(cgroupEnv); root != "" {
			opts = append(opts, framework.WithOverload(overload.WithCgroupRoot(root)))
		}
	case none:
		cfg.OverloadCPU = 0
	case goZero:
		cfg.OverloadCPU = 0
		// go-zero logs every call it drops (logx.Error in shouldDrop): a
		// log line per shed call would cost it more than shedding, so
		// TestMain turns its log off, as it is not by default.
		// zrpc's default: CpuThreshold 900 (zrpc.RpcServerConf).
		opts = append(opts, framework.WithUnaryInterceptor(goZeroShedding(load.NewAdaptiveShedder(load.WithCpuThreshold(900)))))
	case kratos:
		cfg.OverloadCPU = 0
		// kratos' ratelimit.Server middleware's default: bbr.NewLimiter().
		opts = append(opts, framework.WithUnaryInterceptor(kratosBBR(bbr.NewLimiter())))
	default:
		return fmt.Errorf("%s=%q: want %s, %s, %s or %s", serverEnv, p, none, goZero, kratos, svckit)
	}
	app, err := framework.New("shedbench", append(opts, framework.WithConfig(cfg))...)
	if err != nil {
		return err
	}
	app.GRPC().RegisterService(burnDesc(iters), nil)
	return app.Run(context.Background())
}

// goZeroShedding is go-zero's zrpc UnarySheddingInterceptor
// (zrpc/internal/serverinterceptors, internal to go-zero) without its
// statistics: a dropped call fails with RESOURCE_EXHAUSTED, and a call
// that ends in context.DeadlineExceeded is not counted as a pass.
func goZeroShedding(s load.Shedder) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		p, err := s.Allow()
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
		defer func() {
			if errors.Is(err, context.DeadlineExceeded) {
				p.Fail()
			} else {
				p.Pass()
			}
		}()
		return h(ctx, req)
	}
}

// kratosBBR is kratos' middleware/ratelimit.Server around a BBR limiter:
// a dropped call fails with its ErrLimitExceed, HTTP 429, which kratos
// turns into RESOURCE_EXHAUSTED on gRPC.
func kratosBBR(l *bbr.BBR) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		done, err := l.Allow()
		if err != nil {
			return nil, status.Error(codes.ResourceExhausted, "RATELIMIT: service unavailable due to rate limit exceeded")
		}
		resp, err := h(ctx, req)
		done(ratelimit.DoneInfo{Err: err})
		return resp, err
	}
}

// nopRegistrar registers the instance nowhere: the benchmark dials it by
// address.
type nopRegistrar struct{}

func (nopRegistrar) Register(context.Context) error   { return nil }
func (nopRegistrar) Deregister(context.Context) error { return nil }
func (nopRegistrar) Registered() bool                 { return true }
func (nopRegistrar) Done() <-chan struct{}            { return nil }
