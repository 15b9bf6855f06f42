package openflow

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeSwitch serves one connection on a unix socket with script, which fails the test through t.Errorf.
func fakeSwitch(t *testing.T, script func(c net.Conn) error) string {
	t.Helper()
	sock := t.TempDir() + "/br.mgmt"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := script(c); err != nil {
			t.Errorf("fake switch: %v", err)
		}
	}()
	return sock
}

func sendMsg(c net.Conn, version, typ uint8, xid uint32, body []byte) error {
	b := []byte{version, typ, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(8+len(body)))
	binary.BigEndian.PutUint32(b[4:], xid)
	_, err := c.Write(append(b, body...))
	return err
}

func recvMsg(c net.Conn) (typ uint8, xid uint32, body []byte, err error) {
	h := make([]byte, 8)
	if _, err = io.ReadFull(c, h); err != nil {
		return 0, 0, nil, err
	}
	body = make([]byte, binary.BigEndian.Uint16(h[2:])-8)
	_, err = io.ReadFull(c, body)
	return h[1], binary.BigEndian.Uint32(h[4:]), body, err
}

// hello sends the switch's HELLO and reads the client's.
func hello(c net.Conn, version uint8, body []byte) error {
	if err := sendMsg(c, version, typeHello, 1, body); err != nil {
		return err
	}
	typ, _, _, err := recvMsg(c)
	if err == nil && typ != typeHello {
		err = errors.New("client did not start with HELLO")
	}
	return err
}

func TestDialNegotiatesOpenFlow13(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint8
		body    string // hello elements
		want    string // error substring, "" for success
	}{
		{"1.3 without bitmap", 4, "", ""},
		{"1.5 without bitmap", 6, "", ""},
		{"bitmap with 1.0 to 1.5", 6, "0001 0008 0000007e", ""},
		{"1.0 only", 1, "", "at most version 0x01"},
		{"bitmap without 1.3", 6, "0001 0008 00000062", "bitmap is 0x62"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := unhex(t, tc.body)
			sock := fakeSwitch(t, func(c net.Conn) error { return hello(c, tc.version, body) })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, sock)
			if tc.want == "" && err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "does not speak OpenFlow 1.3")) {
				t.Fatalf("Dial: %v, want an error mentioning %q", err, tc.want)
			}
			if c != nil {
				_ = c.Close()
			}
		})
	}
}

func TestDialReportsAHelloError(t *testing.T) {
	sock := fakeSwitch(t, func(c net.Conn) error {
		if _, _, _, err := recvMsg(c); err != nil {
			return err
		}
		return sendMsg(c, 1, typeError, 0, []byte{0, 0, 0, 0}) // HELLO_FAILED, INCOMPATIBLE
	})
	_, err := Dial(context.Background(), sock)
	if err == nil || !strings.Contains(err.Error(), "OFPET_HELLO_FAILED/OFPHFC_INCOMPATIBLE") {
		t.Fatalf("Dial: %v", err)
	}
}

// The switch pings in the middle of a flow dump whose reply spans two messages.
func TestFlowsAnswersEchoAndReadsAllParts(t *testing.T) {
	cookie := unhex(t, "0000000000001234 ffffffffffffffff")
	first, last := unhex(t, "0001 0001 00000000"+statsCtEstablished), unhex(t, "0001 0000 00000000"+statsCommit)
	sock := fakeSwitch(t, func(c net.Conn) error {
		if err := hello(c, 4, nil); err != nil {
			return err
		}
		typ, xid, body, err := recvMsg(c)
		if err != nil || typ != typeMultipartRequest || !bytes.Equal(body[24:40], cookie) {
			return errors.Join(err, errors.New("expected a flow stats request for cookie 0x1234"))
		}
		if err := sendMsg(c, 4, typeEchoRequest, 77, []byte("ping")); err != nil {
			return err
		}
		if etyp, exid, ebody, err := recvMsg(c); err != nil || etyp != typeEchoReply || exid != 77 || string(ebody) != "ping" {
			return errors.Join(err, errors.New("expected the echo reply"))
		}
		if err := sendMsg(c, 4, typeMultipartReply, xid, first); err != nil { // OFPMPF_REPLY_MORE
			return err
		}
		return sendMsg(c, 4, typeMultipartReply, xid, last)
	})
	c := dial(t, sock)
	got, err := c.Flows(context.Background(), 0x1234)
	if err != nil {
		t.Fatal(err)
	}
	want := withCookie(gatewayFlows()[2:3], 0x1234)
	want = append(want, withCookie(gatewayFlows()[0:1], 0x1234)...)
	if len(got) != 2 || got[0].String() != want[0].String() || got[1].String() != want[1].String() {
		t.Fatalf("flows: %v, want %v", got, want)
	}
}

func TestDeadlineEndsAWaitAndTheConnection(t *testing.T) {
	sock := fakeSwitch(t, func(c net.Conn) error {
		if err := hello(c, 4, nil); err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, c) // never answers
		return nil
	})
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Flows(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("Flows against a silent switch: %v after %v", err, time.Since(start))
	}
	if err := c.Replace(context.Background(), 1, nil); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("Replace on a broken connection: %v", err)
	}
}

func TestCancelEndsAWait(t *testing.T) {
	sock := fakeSwitch(t, func(c net.Conn) error {
		if err := hello(c, 4, nil); err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, c)
		return nil
	})
	c := dial(t, sock)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := c.Replace(ctx, 1, []Flow{{Cookie: 1}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Replace cancelled: %v", err)
	}
}
