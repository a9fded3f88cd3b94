// Command loadgen offers open-loop load to one instance of the test
// service, dialled directly (no resolver, no balancer, no retries), run as
// a child process by the chaos suite so that its rate does not depend on
// the race detector of the test binary. It starts one Sleep(0) call every
// 1/rate for the duration, each in its own goroutine with its own timeout,
// skips a start while max calls are in flight, and prints a report line
// once every call has ended:
//
//	loadgen report {"sent":...,"ok":...,...}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/svckit/svckit/internal/testsvc"
)

// report is what loadgen prints: calls by outcome.
type report struct {
	Sent     int64         `json:"sent"`
	OK       int64         `json:"ok"`
	Shed     int64         `json:"shed"`     // RESOURCE_EXHAUSTED
	Deadline int64         `json:"deadline"` // DEADLINE_EXCEEDED
	Other    int64         `json:"other"`
	Skipped  int64         `json:"skipped"` // not started: max in flight
	Elapsed  time.Duration `json:"elapsed"` // of the calls' starts
	Errors   []string      `json:"errors"`  // the first few of Other
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "", "the instance's gRPC address")
	rate := flag.Float64("rate", 100, "calls started per second")
	duration := flag.Duration("duration", 5*time.Second, "how long to offer load")
	timeout := flag.Duration("timeout", time.Second, "each call's timeout")
	maxInFlight := flag.Int64("max", 500, "most calls in flight")
	flag.Parse()
	if *addr == "" || !(*rate > 0) || *duration <= 0 || *timeout <= 0 || *maxInFlight <= 0 {
		return errors.New("want -addr, and positive -rate, -duration, -timeout and -max")
	}
	cc, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not connected to %s within 10s (last state %s)", *addr, s)
		}
	}
	fmt.Println("loadgen sending")
	r := offer(cc, *rate, *duration, *timeout, *maxInFlight)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Printf("loadgen report %s\n", b)
	return nil
}

// offer starts calls at rate for d and returns their outcomes once all
// have ended.
func offer(cc *grpc.ClientConn, rate float64, d, timeout time.Duration, maxInFlight int64) *report {
	var (
		r        report
		mu       sync.Mutex
		inflight atomic.Int64
		wg       sync.WaitGroup
		sent     int64
		skipped  int64
		tick     = time.NewTicker(time.Duration(float64(time.Second) / rate))
		start    = time.Now()
	)
	defer tick.Stop()
	call := func() {
		defer inflight.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := testsvc.Sleep(ctx, cc, 0)
		cancel()
		mu.Lock()
		defer mu.Unlock()
		switch status.Code(err) {
		case codes.OK:
			r.OK++
		case codes.ResourceExhausted:
			r.Shed++
		case codes.DeadlineExceeded:
			r.Deadline++
		default:
			r.Other++
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, err.Error())
			}
		}
	}
	// Each tick starts the calls due by then, so that a late tick (a
	// busy machine) does not lower the rate.
	for elapsed := time.Duration(0); elapsed < d; elapsed = time.Since(start) {
		for due := int64(elapsed.Seconds()*rate) + 1; sent+skipped < due; {
			if inflight.Load() >= maxInFlight {
				skipped++
				continue
			}
			sent++
			inflight.Add(1)
			wg.Go(call)
		}
		<-tick.C
	}
	elapsed := time.Since(start)
	wg.Wait()
	r.Sent, r.Skipped, r.Elapsed = sent, skipped, elapsed
	return &r
}
