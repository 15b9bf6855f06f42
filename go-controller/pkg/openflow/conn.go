package openflow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Conn is an OpenFlow 1.3 connection to one bridge's management socket. Its methods may be called from
// several goroutines; they run one at a time. After an I/O failure, a malformed reply or a cancelled
// context the connection is unusable (every later call fails): Close it and Dial again.
type Conn struct {
	path string
	nc   net.Conn
	r    *bufio.Reader

	mu     sync.Mutex // one exchange at a time; guards xid and broken
	xid    uint32
	broken error

	wmu sync.Mutex // whole messages go out one at a time
}

// message is one OpenFlow message read from the switch.
type message struct {
	version, typ uint8
	xid          uint32
	body         []byte
}

// Dial connects to a bridge's management socket (<OVS_RUNDIR>/<bridge>.mgmt) and negotiates OpenFlow 1.3.
// It fails if the switch does not allow OpenFlow 1.3 on the bridge (see the Bridge's protocols column).
func Dial(ctx context.Context, socketPath string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("openflow: connect to %s: %w", socketPath, err)
	}
	c := &Conn{path: socketPath, nc: nc, r: bufio.NewReader(nc)}
	if err := c.do(ctx, c.handshake); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("openflow: %s: hello: %w", socketPath, err)
	}
	return c, nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("openflow: close %s: %w", c.path, err)
	}
	return nil
}

// handshake sends our HELLO (offering 1.3 only) and checks the switch's: with a version bitmap it must
// include 1.3, without one its version must be at least 1.3 (the negotiated version is the lower one).
func (c *Conn) handshake() error {
	hello, err := helloMessage(c.nextXid())
	if err != nil {
		return err
	}
	if err := c.write(hello); err != nil {
		return c.fail(err)
	}
	m, err := c.read()
	if err != nil {
		return c.fail(err)
	}
	switch m.typ {
	case typeHello:
		return c.fail(checkHello(m))
	case typeError:
		return c.fail(parseError(m.xid, m.body, "hello"))
	}
	return c.fail(fmt.Errorf("switch sent message type %d before its hello", m.typ))
}

// checkHello accepts the switch's HELLO if it allows OpenFlow 1.3.
func checkHello(m message) error {
	for b := m.body; len(b) >= 4; {
		typ, n := be.Uint16(b), int(be.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			return fmt.Errorf("malformed hello element (type %d, length %d)", typ, n)
		}
		if typ == helloElemBitmap && n >= 8 {
			bitmap := be.Uint32(b[4:])
			if bitmap&(1<<version13) == 0 {
				return fmt.Errorf("switch does not speak OpenFlow 1.3 (its versions bitmap is 0x%x; "+
					"allow OpenFlow13 in the bridge's protocols)", bitmap)
			}
			return nil
		}
		b = b[min((n+7)/8*8, len(b)):]
	}
	if m.version < version13 {
		return fmt.Errorf("switch does not speak OpenFlow 1.3 (it offers at most version 0x%02x)", m.version)
	}
	return nil
}

// do runs one exchange with ctx's deadline and cancellation applied to the socket.
func (c *Conn) do(ctx context.Context, f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return fmt.Errorf("connection unusable after an earlier failure (dial again): %w", c.broken)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	if err := c.nc.SetDeadline(deadline); err != nil {
		return c.fail(fmt.Errorf("set deadline: %w", err))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	err := f() // f marks the connection broken on any I/O error
	stop()
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		// The socket's deadline, which is ctx's, fired before ctx's own timer.
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

// fail marks the connection unusable (the stream may be out of step) and returns err.
func (c *Conn) fail(err error) error {
	if err != nil && c.broken == nil {
		c.broken = err
	}
	return err
}

func (c *Conn) nextXid() uint32 {
	c.xid++
	return c.xid
}

func (c *Conn) write(msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.nc.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (c *Conn) read() (message, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return message{}, fmt.Errorf("read: %w", err)
	}
	m := message{version: h[0], typ: h[1], xid: be.Uint32(h[4:])}
	n := int(be.Uint16(h[2:]))
	if n < headerLen {
		return m, fmt.Errorf("read: message type %d with length %d", m.typ, n)
	}
	m.body = make([]byte, n-headerLen)
	if _, err := io.ReadFull(c.r, m.body); err != nil {
		return m, fmt.Errorf("read: %w", err)
	}
	// HELLO, and an error answering ours, may come in the switch's own version.
	if m.version != version13 && m.typ != typeHello && m.typ != typeError {
		return m, fmt.Errorf("read: message type %d of version 0x%02x on an OpenFlow 1.3 connection", m.typ, m.version)
	}
	return m, nil
}

// exchange writes msgs from a goroutine, so that neither side can block the other with a full buffer, while
// it reads and hands every message except echo requests (answered here) to handle until handle says done.
// Any error it returns leaves the connection unusable; OpenFlow errors are for handle to collect.
func (c *Conn) exchange(msgs [][]byte, handle func(message) (done bool, err error)) error {
	werr := make(chan error, 1)
	go func() {
		for _, msg := range msgs {
			if err := c.write(msg); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	err := c.readUntil(handle)
	if err != nil {
		_ = c.nc.SetDeadline(time.Unix(1, 0)) // unblock the writer
	}
	return c.fail(errors.Join(err, <-werr))
}

func (c *Conn) readUntil(handle func(message) (bool, error)) error {
	for {
		m, err := c.read()
		if err != nil {
			return err
		}
		if m.typ == typeEchoRequest {
			reply, err := simpleMessage(typeEchoReply, m.xid, m.body)
			if err == nil {
				err = c.write(reply)
			}
			if err != nil {
				return fmt.Errorf("echo reply: %w", err)
			}
			continue
		}
		if done, err := handle(m); done || err != nil {
			return err
		}
	}
}
