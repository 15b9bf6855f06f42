// Package workload is the sandbox's stand-in for container images: a server that listens on the ports a pod
// declares (TCP and UDP) and answers every connection or datagram with the pod's name and the client address it
// saw, and the probe that asks it. Tests read the answer to learn who reached whom and through which NAT.
package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Serve listens on every port until ctx ends. It fails at once when a port cannot be opened.
func Serve(ctx context.Context, name string, tcp, udp []int) error {
	var wg sync.WaitGroup
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
		wg.Wait()
	}()
	for _, port := range udp {
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		if err != nil {
			return fmt.Errorf("udp port %d: %w", port, err)
		}
		closers = append(closers, func() { pc.Close() })
		wg.Add(1)
		go func() { defer wg.Done(); serveUDP(pc, name) }()
	}
	for _, port := range tcp {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return fmt.Errorf("tcp port %d: %w", port, err)
		}
		closers = append(closers, func() { ln.Close() })
		wg.Add(1)
		go func() { defer wg.Done(); serveTCP(ln, name) }()
	}
	<-ctx.Done()
	return nil
}

func serveTCP(ln net.Listener, name string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = fmt.Fprintf(conn, "%s %s\n", name, conn.RemoteAddr())
		}()
	}
}

func serveUDP(pc net.PacketConn, name string) {
	buf := make([]byte, 2048)
	for {
		_, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, addr)), addr)
	}
}

// Reply is what a workload answered.
type Reply struct {
	Name   string // the pod that answered
	Client string // the client address it saw ("ip:port")
}

// Probe connects to addr ("ip:port") by protocol (tcp or udp) and returns the answer.
func Probe(proto, addr string, timeout time.Duration) (Reply, error) {
	var conn net.Conn
	var err error
	deadline := time.Now().Add(timeout)
	switch proto {
	case "tcp":
		conn, err = net.DialTimeout("tcp", addr, timeout)
	case "udp":
		conn, err = net.Dial("udp", addr)
	default:
		return Reply{}, fmt.Errorf("unknown protocol %q (want tcp or udp)", proto)
	}
	if err != nil {
		return Reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	buf := make([]byte, 512)
	if proto == "udp" {
		// Datagrams get lost: ask again until the deadline.
		for {
			if _, err := conn.Write([]byte("probe")); err != nil {
				return Reply{}, err
			}
			_ = conn.SetReadDeadline(min(deadline, time.Now().Add(300*time.Millisecond)))
			n, err := conn.Read(buf)
			if err == nil {
				return parse(string(buf[:n]))
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || time.Now().After(deadline) {
				return Reply{}, err
			}
		}
	}
	n, err := conn.Read(buf)
	if err != nil {
		return Reply{}, err
	}
	return parse(string(buf[:n]))
}

func parse(s string) (Reply, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Reply{}, fmt.Errorf("unexpected answer %q", s)
	}
	return Reply{Name: f[0], Client: f[1]}, nil
}

func min(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
