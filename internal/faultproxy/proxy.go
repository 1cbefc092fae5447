// Package faultproxy is a loopback-only TCP proxy for tests that need a
// misbehaving network: it can partition a node, cut off one source address,
// delay traffic and drop links, all switched at run time.
//
// A partition is a black hole, like a real network split: connections stay
// open but bytes vanish, so peers notice only through their own timeouts.
// Links that lost bytes are closed when the partition heals, because a TCP
// stream with a gap in it would otherwise deliver garbage.
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// MaxLinks bounds the connections one proxy carries at once; more are
// refused so a runaway test cannot exhaust file descriptors.
const MaxLinks = 256

// Proxy forwards connections from its listen address to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu          sync.Mutex
	links       map[*link]struct{}
	partitioned bool
	blocked     map[string]bool // source IPs cut off
	delay       time.Duration
	closed      bool

	wg sync.WaitGroup
}

// link is one proxied connection pair.
type link struct {
	client, server net.Conn
	source         string
	tainted        bool // bytes were discarded
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		l.server.Close()
	})
}

// New starts a proxy listening on listen (use port 0 for any) that forwards
// to target. Both must be loopback addresses.
func New(listen, target string) (*Proxy, error) {
	for _, a := range []string{listen, target} {
		if err := checkLoopback(a); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, links: make(map[*link]struct{}), blocked: make(map[string]bool)}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("faultproxy: address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("faultproxy: address %q is not a loopback IP", addr)
	}
	return nil
}

// Addr returns the address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Partition black-holes every link, existing and new.
func (p *Proxy) Partition() {
	p.mu.Lock()
	p.partitioned = true
	p.mu.Unlock()
}

// Block black-holes links whose client connects from source IP ip.
func (p *Proxy) Block(ip string) {
	p.mu.Lock()
	p.blocked[ip] = true
	p.mu.Unlock()
}

// Heal ends the partition and every block, closing links that lost bytes.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.partitioned = false
	clear(p.blocked)
	var tainted []*link
	for l := range p.links {
		if l.tainted {
			tainted = append(tainted, l)
		}
	}
	p.mu.Unlock()
	for _, l := range tainted {
		l.close()
	}
}

// SetDelay holds every chunk of data for d before forwarding it.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// DropLinks closes every current link; new connections still work.
func (p *Proxy) DropLinks() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Links returns the number of open links.
func (p *Proxy) Links() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops the proxy and closes every link.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.DropLinks()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		full := len(p.links) >= MaxLinks || p.closed
		p.mu.Unlock()
		if full {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	source, _, _ := net.SplitHostPort(client.RemoteAddr().String())
	l := &link{client: client, server: server, source: source}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(l, server, client) }()
	go func() { defer wg.Done(); p.pipe(l, client, server) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pipe copies src to dst chunk by chunk, consulting the fault settings for
// every chunk so a switch takes effect at once.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hole := p.partitioned || p.blocked[l.source]
			delay := p.delay
			if hole {
				l.tainted = true
			}
			p.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
			if !hole {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or a closed link ends both directions
		}
	}
}
