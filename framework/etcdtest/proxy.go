package etcdtest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"golang.org/x/time/rate"
)

// Proxy is a TCP proxy on 127.0.0.1 that a test can cut: Cut closes every
// connection through it and refuses new ones until Heal. Put it between a
// client and etcd to cut that client off alone. SetBandwidth makes it a
// slow link instead.
type Proxy struct {
	target string
	lis    net.Listener
	wg     sync.WaitGroup
	ctx    context.Context // ends with Close
	stop   context.CancelFunc

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[net.Conn]struct{}
	limit  *rate.Limiter // nil: no bound
}

// chunk is the most bytes a pipe forwards at a time.
const chunk = 16 << 10

// NewProxy starts a proxy to target, closed when tb ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("etcdtest: proxy: %v", err)
	}
	p := &Proxy{target: target, lis: lis, conns: make(map[net.Conn]struct{})}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the address clients dial instead of the target.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Cut closes every connection through the proxy and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// SetBandwidth bounds the bytes the proxy forwards, over every connection
// and both directions together, to bytesPerSec a second, from now on and
// on the connections already open; 0 or less removes the bound.
func (p *Proxy) SetBandwidth(bytesPerSec int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytesPerSec <= 0 {
		p.limit = nil
		return
	}
	// Bursts of 1/20 s at most: the bytes come in small steps.
	p.limit = rate.NewLimiter(rate.Limit(bytesPerSec), max(1, min(chunk, bytesPerSec/20)))
}

// Heal lets connections through again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.stop()
	_ = p.lis.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		refuse := p.cut || p.closed
		p.mu.Unlock()
		if refuse {
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// track registers a connection pair unless the proxy was cut meanwhile.
func (p *Proxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		_ = in.Close()
		_ = out.Close()
		return false
	}
	p.conns[in] = struct{}{}
	p.conns[out] = struct{}{}
	return true
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, chunk)
	for {
		p.mu.Lock()
		limit := p.limit
		p.mu.Unlock()
		size := chunk
		if limit != nil {
			size = limit.Burst()
		}
		n, err := src.Read(buf[:size])
		if n > 0 {
			if limit != nil && limit.WaitN(p.ctx, n) != nil {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
