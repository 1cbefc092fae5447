package raftlease

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ferrydb/ferry/internal/peerauth"
)

// Every connection to the Raft port starts with one byte naming its
// protocol, so Raft traffic and lease requests share one port (and one
// firewall rule). Anything else is closed without being read further.
// With cluster auth, the byte is followed by the cluster's hello frame
// (peerauth), which is checked before the connection is served.
const (
	protoRaft byte = 'R'
	protoRPC  byte = 'L'
)

// routeTimeout bounds how long a new connection may take to name its
// protocol, so idle connections cannot pile up.
const routeTimeout = 5 * time.Second

// maxRPCConns bounds concurrent lease requests served.
const maxRPCConns = 64

// mux accepts connections on the Raft port and routes them by their first
// byte: Raft connections to the Raft transport, lease requests to serveRPC.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	source    *net.TCPAddr // local address outbound connections use
	serveRPC  func(net.Conn)
	// auth, if set, is required of every connection; refuseRPC answers a
	// lease request whose hello was refused, so the caller learns why.
	auth      *peerauth.Auth
	refuseRPC func(net.Conn, error)

	raftCh chan net.Conn
	rpcSem chan struct{}
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newMux(ln net.Listener, advertise net.Addr, source *net.TCPAddr, auth *peerauth.Auth, serveRPC func(net.Conn), refuseRPC func(net.Conn, error)) *mux {
	m := &mux{
		ln: ln, advertise: advertise, source: source, serveRPC: serveRPC, auth: auth, refuseRPC: refuseRPC,
		raftCh: make(chan net.Conn),
		rpcSem: make(chan struct{}, maxRPCConns),
		closed: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.serve()
	return m
}

func (m *mux) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	var b [1]byte
	_ = c.SetReadDeadline(time.Now().Add(routeTimeout))
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	if m.auth != nil && (b[0] == protoRaft || b[0] == protoRPC) {
		via := "raft port (raft)"
		if b[0] == protoRPC {
			via = "raft port (lease request)"
		}
		if err := m.auth.ReadHello(c, via, c.RemoteAddr().String()); err != nil {
			if b[0] == protoRPC && m.refuseRPC != nil {
				_ = c.SetWriteDeadline(time.Now().Add(routeTimeout))
				m.refuseRPC(c, err)
			}
			c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		select {
		case m.raftCh <- c:
		case <-m.closed:
			c.Close()
		}
	case protoRPC:
		select {
		case m.rpcSem <- struct{}{}:
		default:
			c.Close() // overloaded: the caller retries
			return
		}
		defer func() { <-m.rpcSem }()
		m.serveRPC(c)
	default:
		c.Close()
	}
}

// dial connects to a peer's Raft port, names the protocol and, with
// cluster auth, sends the cluster's hello.
func (m *mux) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if m.source != nil {
		d.LocalAddr = m.source
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	// One write for both, so the peer sees them in one segment.
	var open bytes.Buffer
	open.WriteByte(proto)
	if m.auth != nil {
		_ = m.auth.WriteHello(&open)
	}
	if _, err := c.Write(open.Bytes()); err != nil {
		c.Close()
		return nil, fmt.Errorf("open connection to %s: %w", addr, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

func (m *mux) close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

// raftLayer is the mux's Raft side, a raft.StreamLayer.
type raftLayer struct{ m *mux }

// Accept implements net.Listener.
func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener. The mux itself is closed by the manager.
func (l raftLayer) Close() error { return nil }

// Addr implements net.Listener; Raft advertises it to peers.
func (l raftLayer) Addr() net.Addr { return l.m.advertise }

// Dial implements raft.StreamLayer.
func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dial(string(addr), protoRaft, timeout)
}
