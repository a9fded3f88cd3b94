package framework

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/orca"

	"github.com/svckit/svckit/framework/overload"
)

// loadReporter reports the App's load with ORCA: the process's CPU
// utilization (of the CPUs its cgroup allows, with the load shedder on;
// else of all), calls and errors per second, sampled every
// second and attached to every response's trailer, and served out of band
// by the OpenRcaService. grpc-go's weighted_round_robin (through xDS, see
// framework/xds) weights each instance by qps / utilization.
type loadReporter struct {
	rec         orca.ServerMetricsRecorder
	cores       float64 // the CPU the process may use
	calls, errs atomic.Int64
	stop        chan struct{}
	lastCPU     time.Duration
	lastWall    time.Time
	lastCalls   int64
	lastErrs    int64
	sampleEvery time.Duration
}

func newLoadReporter(lim *overload.Limiter) *loadReporter {
	l := &loadReporter{rec: orca.NewServerMetricsRecorder(), cores: float64(runtime.NumCPU()), stop: make(chan struct{}), sampleEvery: time.Second}
	if lim != nil {
		l.cores = lim.Stats().Cores // the cgroup's quota, if less
	}
	l.lastCPU, l.lastWall = processCPU(), time.Now()
	return l
}

func (l *loadReporter) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		l.calls.Add(1)
		resp, err := h(ctx, req)
		if err != nil {
			l.errs.Add(1)
		}
		return resp, err
	}
}

func (l *loadReporter) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		l.calls.Add(1)
		err := h(srv, ss)
		if err != nil {
			l.errs.Add(1)
		}
		return err
	}
}

// serverOptions returns the server options that attach the load to every
// response's trailer: gRPC's ORCA call metrics, and interceptors that ask
// for each call's recorder, as the ORCA interceptors attach a report only
// to calls whose handler asked for it.
func (l *loadReporter) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		orca.CallMetricsServerOption(l.rec),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			orca.CallMetricsRecorderFromContext(ctx)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			orca.CallMetricsRecorderFromContext(ss.Context())
			return h(srv, ss)
		}),
	}
}

// serveORCA registers the OpenRcaService of l on a's server, and adds the
// actor that samples the load.
func (a *App) serveORCA(l *loadReporter) error {
	if err := orca.Register(a.grpc, orca.ServiceOptions{ServerMetricsProvider: l.rec}); err != nil {
		return fmt.Errorf("framework: orca: %w", err)
	}
	a.Add("orca", l.run, func(error) { close(l.stop) })
	return nil
}

// run samples the load every second until interrupted.
func (l *loadReporter) run() error {
	t := time.NewTicker(l.sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return nil
		case <-t.C:
			l.sample()
		}
	}
}

func (l *loadReporter) sample() {
	cpu, now := processCPU(), time.Now()
	calls, errs := l.calls.Load(), l.errs.Load()
	wall := now.Sub(l.lastWall).Seconds()
	if wall <= 0 {
		return
	}
	l.rec.SetCPUUtilization((cpu - l.lastCPU).Seconds() / (wall * l.cores))
	l.rec.SetQPS(float64(calls-l.lastCalls) / wall)
	l.rec.SetEPS(float64(errs-l.lastErrs) / wall)
	l.lastCPU, l.lastWall, l.lastCalls, l.lastErrs = cpu, now, calls, errs
}

// processCPU returns the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
