package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpu burns a fixed CPU time per call within a simulated CPU quota: the
// burns get at most quota cores, as the kernel's CFS bandwidth control
// gives a cgroup limited by cpu.max at most quota × period of CPU per
// period. A call waits for its share before it burns, so that an instance
// offered more than its quota queues, as a throttled container does. The
// rest of the process (gRPC, the App) is not throttled.
type cpu struct {
	cost  time.Duration // CPU per call
	quota float64       // cores; 0: none

	mu     sync.Mutex
	tokens time.Duration // CPU time available now; below 0 when reserved ahead
	at     time.Time     // when tokens was last refilled
}

// period is the CFS period of the simulation (the kernel's default) and
// the most CPU an idle instance can save up, quota × period.
const period = 100 * time.Millisecond

// newCPU returns the burn of cost a call, throttled to the quota of the
// simulated cgroup under root ("" for none).
func newCPU(cost time.Duration, root string) (*cpu, error) {
	c := &cpu{cost: cost, at: time.Now()}
	if root == "" {
		return c, nil
	}
	b, err := os.ReadFile(filepath.Join(root, "sys/fs/cgroup/cpu.max"))
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil, fmt.Errorf("cpu.max %q: want QUOTA PERIOD", b)
	}
	q, err1 := strconv.ParseFloat(f[0], 64)
	p, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return nil, fmt.Errorf("cpu.max %q: want two positive numbers", b)
	}
	c.quota = q / p
	c.tokens = c.burst()
	return c, nil
}

func (c *cpu) burst() time.Duration { return time.Duration(c.quota * float64(period)) }

// run waits for the call's share of the quota, then burns cost of CPU; it
// returns ctx's error if ctx ends while it waits.
func (c *cpu) run(ctx context.Context) error {
	if c.cost == 0 {
		return nil
	}
	if wait := c.reserve(); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			c.mu.Lock()
			c.tokens += c.cost // give the share back, unused
			c.mu.Unlock()
			return ctx.Err()
		}
	}
	burn(c.cost)
	return nil
}

// reserve takes the call's share and returns how long to wait until the
// quota has given it.
func (c *cpu) reserve() time.Duration {
	if c.quota == 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.tokens = min(c.burst(), c.tokens+time.Duration(c.quota*float64(now.Sub(c.at))))
	c.at = now
	c.tokens -= c.cost
	if c.tokens >= 0 {
		return 0
	}
	return time.Duration(float64(-c.tokens) / c.quota)
}

// burn spins until its thread has used d of CPU.
func burn(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, ok := threadCPU()
	if !ok {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
		}
		return
	}
	x := uint64(1)
	for {
		for range 2000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if now, _ := threadCPU(); now-start >= d {
			sink = x
			return
		}
	}
}

// sink keeps the burn loop from being optimised away.
var sink uint64
