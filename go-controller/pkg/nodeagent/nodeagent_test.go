package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/kovn-io/kovn/go-controller/pkg/cniapi"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
)

// tcpEcho listens on addr inside a namespace and answers every connection with reply; it returns a stop func.
func tcpEcho(t *testing.T, netnsPath, addr, reply string) func() {
	t.Helper()
	var ln net.Listener
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, netnsPath, err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte(reply))
			conn.Close()
		}
	}()
	return func() { ln.Close() }
}

// tcpGet connects from inside a namespace and returns what the server said.
func tcpGet(netnsPath, addr string) (string, error) {
	var got string
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(conn)
		got = string(b)
		return err
	})
	return got, err
}

func TestPodsGetWiredAndTalk(t *testing.T) {
	c := newCluster(t, true)
	ctx := context.Background()
	podA, netA := c.createPod("web", "a")
	podB, netB := c.createPod("web", "b")
	sa, sb := c.newSandbox(podA), c.newSandbox(podB)

	for _, s := range []*sandbox{sa, sb} {
		res, err := c.cni.AddNetworkList(ctx, c.conf, c.rt(s))
		if err != nil {
			t.Fatalf("ADD %s: %v", s.pod.Name, err)
		}
		r, err := current.NewResultFromResult(res)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.IPs) != 1 || len(r.Interfaces) != 2 || r.Interfaces[1].Sandbox != s.netns {
			t.Fatalf("ADD %s result: %s", s.pod.Name, r)
		}
	}
	ipA, ipB := netA.IPs[0].Addr().String(), netB.IPs[0].Addr().String()
	for _, s := range []*sandbox{sa, sb} {
		if err := c.cni.CheckNetworkList(ctx, c.conf, c.rt(s)); err != nil {
			t.Fatalf("CHECK %s: %v", s.pod.Name, err)
		}
	}
	// Pod to pod: ping both ways, TCP both ways.
	for _, p := range [][3]string{{sa.name, ipB, "a->b"}, {sb.name, ipA, "b->a"}} {
		if out, err := inNetns(p[0], "ping", "-c", "1", "-W", "3", p[1]); err != nil {
			t.Fatalf("ping %s (%s): %v: %s", p[2], p[1], err, out)
		}
	}
	stopB := tcpEcho(t, sb.netns, ipB+":8080", "hello from b")
	defer stopB()
	stopA := tcpEcho(t, sa.netns, ipA+":8080", "hello from a")
	defer stopA()
	if got, err := tcpGet(sa.netns, ipB+":8080"); err != nil || got != "hello from b" {
		t.Fatalf("TCP a->b: %q %v", got, err)
	}
	if got, err := tcpGet(sb.netns, ipA+":8080"); err != nil || got != "hello from a" {
		t.Fatalf("TCP b->a: %q %v", got, err)
	}
	// The node reaches both pods through the management port, and they see the node's management address.
	for _, ip := range []string{ipA, ipB} {
		if out, err := c.node.Exec("ping", "-c", "1", "-W", "3", ip); err != nil {
			t.Fatalf("node -> pod %s: %v: %s", ip, err, out)
		}
	}
	if got, err := tcpGet(c.node.NetnsPath(), ipB+":8080"); err != nil || got != "hello from b" {
		t.Fatalf("TCP node -> b: %q %v", got, err)
	}

	// The agent restores a management port that lost its address (and with it its routes).
	if out, err := c.node.Exec("ip", "addr", "flush", "dev", "kovn-mp0"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c.eventually("management port restored", func() (bool, string) {
		out, err := c.node.Exec("ping", "-c", "1", "-W", "1", ipA)
		return err == nil, string(out)
	})

	// DEL, then DEL again: both succeed and leave nothing behind.
	for i := range 2 {
		if err := c.cni.DelNetworkList(ctx, c.conf, c.rt(sa)); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if iface, _ := nodeovs.Interface(c.node.OVS, podnet.HostVethName(sa.id)); iface != nil {
		t.Fatal("OVS port left after DEL")
	}
	if out, err := c.node.Exec("ip", "link", "show", podnet.HostVethName(sa.id)); err == nil {
		t.Fatalf("host veth left after DEL: %s", out)
	}
	if err := c.cni.CheckNetworkList(ctx, c.conf, c.rt(sa)); err == nil {
		t.Fatal("CHECK passed after DEL")
	}
	// DEL after the runtime deleted the network namespace.
	if out, err := exec.Command("ip", "netns", "del", sb.name).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := c.cni.DelNetworkList(ctx, c.conf, c.rt(sb)); err != nil {
		t.Fatalf("DEL with the netns gone: %v", err)
	}
	if iface, _ := nodeovs.Interface(c.node.OVS, podnet.HostVethName(sb.id)); iface != nil {
		t.Fatal("OVS port left after DEL with the netns gone")
	}
}

func TestGCRemovesAttachmentsTheRuntimeNoLongerHas(t *testing.T) {
	c := newCluster(t, true)
	ctx := context.Background()
	podA, _ := c.createPod("gc", "keep")
	podB, _ := c.createPod("gc", "stale")
	keep, stale := c.newSandbox(podA), c.newSandbox(podB)
	for _, s := range []*sandbox{keep, stale} {
		if _, err := c.cni.AddNetworkList(ctx, c.conf, c.rt(s)); err != nil {
			t.Fatal(err)
		}
	}
	err := c.cni.GCNetworkList(ctx, c.conf, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: keep.id, IfName: "eth0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if iface, _ := nodeovs.Interface(c.node.OVS, podnet.HostVethName(stale.id)); iface != nil {
		t.Fatal("GC left the stale attachment's OVS port")
	}
	if out, err := c.node.Exec("ip", "link", "show", podnet.HostVethName(stale.id)); err == nil {
		t.Fatalf("GC left the stale host veth: %s", out)
	}
	if err := c.cni.CheckNetworkList(ctx, c.conf, c.rt(keep)); err != nil {
		t.Fatalf("GC broke a valid attachment: %v", err)
	}
	// A GC whose configuration lacks the list of valid attachments must not take every attachment for stale.
	// (libcni itself DELs every cached attachment when given no list, so this goes to the agent directly.)
	resp, err := cniapi.Call(ctx, c.socket, &cniapi.Request{Command: cniapi.GC, Config: []byte(`{"cniVersion":"1.1.0","name":"kovn","type":"kovn-cni"}`)})
	if err != nil || resp.Error == nil || !strings.Contains(resp.Error.Msg, "valid-attachments") {
		t.Fatalf("GC without a valid-attachments list: %v %+v", err, resp)
	}
	if err := c.cni.CheckNetworkList(ctx, c.conf, c.rt(keep)); err != nil {
		t.Fatalf("GC without a list removed a valid attachment: %v", err)
	}
}

// cniError returns the CNI error code and message of err.
func cniError(t *testing.T, err error) (uint, string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a CNI error, got %T %v", err, err)
	}
	return e.Code, e.Msg
}

func TestErrorsAreCNIErrorsThatSayWhy(t *testing.T) {
	c := newCluster(t, true)
	ctx := context.Background()
	pod, _ := c.createPod("err", "p")

	// A missing network namespace.
	s := c.newSandbox(pod)
	s.netns = "/var/run/netns/kovn-does-not-exist"
	_, err := c.cni.AddNetworkList(ctx, c.conf, c.rt(s))
	if code, msg := cniError(t, err); code != types.ErrInvalidNetNS || !strings.Contains(msg, "kovn-does-not-exist") {
		t.Fatalf("missing netns: code %d %q", code, msg)
	}
	// A pod that does not exist: bounded wait, then "try again later" naming the pod.
	ghost := c.newSandbox(nil)
	rt := c.rt(ghost)
	rt.Args = append(rt.Args, [2]string{"K8S_POD_NAMESPACE", "err"}, [2]string{"K8S_POD_NAME", "ghost"})
	conf := withPluginField(t, c.conf, `"timeoutSeconds": 2`)
	_, err = c.cni.AddNetworkList(ctx, conf, rt)
	if code, msg := cniError(t, err); code != types.ErrTryAgainLater || !strings.Contains(msg, "err/ghost") {
		t.Fatalf("unknown pod: code %d %q", code, msg)
	}
	// Not a Kubernetes pod at all.
	_, err = c.cni.AddNetworkList(ctx, c.conf, c.rt(c.newSandbox(nil)))
	if code, msg := cniError(t, err); code != types.ErrInvalidEnvironmentVariables || !strings.Contains(msg, "K8S_POD_NAME") {
		t.Fatalf("no pod args: code %d %q", code, msg)
	}
	// A broken configuration: not JSON for the plugin.
	bad := withPluginField(t, c.conf, `"serverSocket": 42`)
	_, err = c.cni.AddNetworkList(ctx, bad, c.rt(c.newSandbox(pod)))
	if code, msg := cniError(t, err); code != types.ErrDecodingFailure || !strings.Contains(msg, "not valid JSON") {
		t.Fatalf("bad config: code %d %q", code, msg)
	}
	// A node agent that is not running.
	down := withPluginField(t, c.conf, `"serverSocket": "/var/run/kovn-nowhere/cni.sock"`)
	_, err = c.cni.AddNetworkList(ctx, down, c.rt(c.newSandbox(pod)))
	if code, msg := cniError(t, err); code != types.ErrTryAgainLater || !strings.Contains(msg, "/var/run/kovn-nowhere/cni.sock") {
		t.Fatalf("agent down: code %d %q", code, msg)
	}
	if err := c.cni.GetStatusNetworkList(ctx, down); err == nil {
		t.Fatal("STATUS succeeded with the agent down")
	}
}

func TestDeadOVSIsABoundedClearError(t *testing.T) {
	c := newCluster(t, true)
	pod, _ := c.createPod("dead", "p")
	if err := c.node.Stop("ovsdb-server"); err != nil {
		t.Fatal(err)
	}
	conf := withPluginField(t, c.conf, `"timeoutSeconds": 5`)
	start := time.Now()
	_, err := c.cni.AddNetworkList(context.Background(), conf, c.rt(c.newSandbox(pod)))
	took := time.Since(start)
	code, msg := cniError(t, err)
	if code != types.ErrIOFailure || !strings.Contains(msg, "dead/p") || !strings.Contains(msg, "reconnect") {
		t.Fatalf("ADD with OVS down: code %d %q", code, msg)
	}
	if took > 30*time.Second { // a bound against hanging, not a speed check
		t.Fatalf("ADD with OVS down took %s, : it must give up within its 5 s budget, not hang", took)
	}
}

// withPluginField returns a copy of the conflist with one field of kovn's plugin entry set to a raw JSON value
// (written "key": value).
func withPluginField(t *testing.T, list *libcni.NetworkConfigList, field string) *libcni.NetworkConfigList {
	t.Helper()
	var kv map[string]json.RawMessage
	if err := json.Unmarshal([]byte("{"+field+"}"), &kv); err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(list.Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	plugin := conf["plugins"].([]any)[0].(map[string]any)
	for k, v := range kv {
		plugin[k] = v
	}
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	out, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatalf("conflist %s: %v", data, err)
	}
	return out
}
