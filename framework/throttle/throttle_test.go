package throttle

import (
	"math"
	"testing"
	"time"
)

// clock is a Throttle's time, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTest(t *testing.T, opts ...Option) (*Throttle, *clock) {
	t.Helper()
	th, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_000_000, 0)}
	th.now = c.now
	return th, c
}

// call makes one call that the backend accepts if accept says so, and
// reports whether it was sent.
func call(th *Throttle, accept bool) bool {
	if !th.Allow() {
		return false
	}
	th.Done(accept)
	return true
}

func TestNothingIsRejectedWhileTheBackendAcceptsHalf(t *testing.T) {
	th, c := newTest(t)
	for i := range 5000 {
		if !call(th, i%2 == 0) {
			t.Fatalf("call %d rejected; stats %+v", i, th.Stats())
		}
		c.add(time.Millisecond)
	}
}

func TestAnOutageIsMetWithAboutSlackCallsAWindow(t *testing.T) {
	th, c := newTest(t)
	sent := 0
	for range 10000 { // 33 windows of 300 calls
		if call(th, false) {
			sent++
		}
		c.add(10 * time.Millisecond)
	}
	// A window lets through the first slack = 10 calls (K × 0 accepts +
	// slack), then the n-th with probability about 11/n as the window
	// slides: a dozen or two a window, far from 300.
	if sent > 33*25 {
		t.Fatalf("sent %d of 10000 calls to a backend accepting none over 33 windows; want a dozen or two a window", sent)
	}
	t.Logf("sent %d of 10000 calls over 33 windows to a backend accepting none", sent)
	if st := th.Stats(); st.Rejected != uint64(10000-sent) || st.Probability < 0.9 {
		t.Fatalf("stats %+v after %d sent", st, sent)
	}
}

func TestSentCallsFollowKTimesAccepts(t *testing.T) {
	// A backend that accepts a fifth of the calls it gets: the client
	// sends about K × accepts + slack, so per window of 1000 attempts it
	// sends S with S = 2 × S/5 + 10, about 17, not 1000.
	th, c := newTest(t, WithSlack(0))
	sent, accepted := 0, 0
	for i := range 20000 {
		accept := sent%5 == 0
		if call(th, accept) {
			sent++
			if accept {
				accepted++
			}
		}
		c.add(10 * time.Millisecond)
		if i == 9999 {
			sent, accepted = 0, 0 // measure the second half, steady
		}
	}
	if ratio := float64(sent) / float64(accepted); math.Abs(ratio-5) > 1 || sent > 2000 {
		t.Fatalf("sent %d, accepted %d: want about 5 sent per accept and far fewer than 10000 sent", sent, accepted)
	}
}

func TestRecoveryTakesAFewWindows(t *testing.T) {
	th, c := newTest(t, WithWindow(time.Second, 10))
	for range 1000 {
		call(th, false)
		c.add(time.Millisecond)
	}
	if p := th.Stats().Probability; p < 0.9 {
		t.Fatalf("probability %.2f after an outage; want ≥ 0.9", p)
	}
	// The backend is back. Calls rejected locally count as requests, so
	// the probability does not drop to 0 once the outage ages out: it
	// falls window by window, about p → 2p − 1 with K = 2, as accepts
	// return. From 0.9 that is four windows.
	for i := range 10000 {
		call(th, true)
		c.add(time.Millisecond)
		if th.Stats().Probability == 0 {
			t.Logf("nothing rejected %.1f windows after recovery", float64(i)/1000)
			if i > 5000 {
				t.Fatalf("%.1f windows to recover; want at most 5", float64(i)/1000)
			}
			return
		}
	}
	t.Fatalf("stats %+v ten windows after recovery; want probability 0", th.Stats())
}

func TestNewRefusesBadSettings(t *testing.T) {
	for name, o := range map[string]Option{
		"K below 1":    WithK(0.5),
		"K NaN":        WithK(math.NaN()),
		"K infinite":   WithK(math.Inf(1)),
		"slack < 0":    WithSlack(-1),
		"slack NaN":    WithSlack(math.NaN()),
		"no bucket":    WithWindow(time.Second, 0),
		"tiny buckets": WithWindow(time.Millisecond, 10),
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
