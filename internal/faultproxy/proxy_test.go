package faultproxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer echoes lines back until the connection closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestProxyFaults(t *testing.T) {
	p, err := New("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello", time.Second); err != nil || got != "hello\n" {
		t.Fatalf("round trip: %q %v", got, err)
	}

	p.Partition()
	if _, err := roundTrip(c, "lost", 200*time.Millisecond); err == nil {
		t.Fatal("data crossed a partition")
	}
	p.Heal()
	// The link lost bytes, so healing closed it; a new one works.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, "again", time.Second); err != nil || got != "again\n" {
		t.Fatalf("after heal: %q %v", got, err)
	}

	p.Block("127.0.0.1")
	if _, err := roundTrip(c2, "blocked", 200*time.Millisecond); err == nil {
		t.Fatal("data from a blocked source crossed")
	}
	p.Heal()

	p.SetDelay(100 * time.Millisecond)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	start := time.Now()
	if got, err := roundTrip(c3, "slow", 2*time.Second); err != nil || got != "slow\n" {
		t.Fatalf("delayed: %q %v", got, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("delay not applied: round trip took %s", d)
	}
	p.SetDelay(0)

	p.DropLinks()
	_ = c3.SetDeadline(time.Now().Add(time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatal("dropped link still open")
	}
}

func TestProxyRefusesNonLoopback(t *testing.T) {
	for _, bad := range [][2]string{
		{"0.0.0.0:0", "127.0.0.1:1"},
		{"127.0.0.1:0", "8.8.8.8:53"},
		{"127.0.0.1:0", "example.com:80"},
		{"nonsense", "127.0.0.1:1"},
	} {
		if p, err := New(bad[0], bad[1]); err == nil {
			p.Close()
			t.Fatalf("New(%q, %q) accepted", bad[0], bad[1])
		} else if !strings.Contains(err.Error(), "faultproxy") {
			t.Fatalf("unclear error: %v", err)
		}
	}
}
