package peers

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// phase is a stretch of offered load at a fixed rate.
type phase struct {
	rate float64 // calls per second
	dur  time.Duration
}

// call is the outcome of one call of an open-loop run.
type call struct {
	phase int
	at    time.Duration // scheduled start, from the run's start
	lag   time.Duration // how late the generator started it
	lat   time.Duration // from the scheduled start to the answer
	code  codes.Code
	full  bool // not sent: maxInFlight calls were in flight
}

// maxInFlight bounds the calls the generator has in flight; a call due
// beyond it is not sent and counts as failed.
const maxInFlight = 4096

// offer runs phases back to back, open loop: calls start at evenly spaced
// times whatever the answers, each with the deadline d from its scheduled
// start, and the latency counts from that start, so that a late generator
// does not hide the server's queue (coordinated omission).
func offer(cc grpc.ClientConnInterface, phases []phase, d time.Duration) []call {
	var calls []call
	var off time.Duration
	for i, p := range phases {
		gap := time.Duration(float64(time.Second) / p.rate)
		for at := time.Duration(0); at < p.dur; at += gap {
			calls = append(calls, call{phase: i, at: off + at})
		}
		off += p.dur
	}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range calls {
		c := &calls[i]
		if wait := c.at - time.Since(start); wait > 0 {
			time.Sleep(wait)
		}
		c.lag = time.Since(start) - c.at
		select {
		case sem <- struct{}{}:
		default:
			c.full, c.code = true, codes.ResourceExhausted
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			due := start.Add(c.at)
			ctx, cancel := context.WithDeadline(context.Background(), due.Add(d))
			err := cc.Invoke(ctx, burnMethod, &emptypb.Empty{}, new(emptypb.Empty))
			cancel()
			c.lat, c.code = time.Since(due), status.Code(err)
		})
	}
	wg.Wait()
	return calls
}

// closedLoop runs n callers, each calling again as soon as it is
// answered, for dur, and returns the latencies of the calls that
// succeeded and the calls that failed.
func closedLoop(cc grpc.ClientConnInterface, n int, dur time.Duration) (lats []time.Duration, failed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for range n {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) {
				t := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := cc.Invoke(ctx, burnMethod, &emptypb.Empty{}, new(emptypb.Empty))
				cancel()
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lats, failed = append(lats, mine...), failed+bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return lats, failed
}
