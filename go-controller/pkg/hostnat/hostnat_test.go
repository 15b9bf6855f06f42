package hostnat

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
)

// The test bed: a "host" namespace with a node address and a management port (veth) whose peer
// namespace plays OVN: it owns the ClusterIP and serves it. The peer has no route to the node address, so an
// answer only comes back when the host masqueraded the connection to the management port's address.
const (
	nodeIP    = "192.168.77.11"
	mgmtIP    = "10.244.0.2"
	clusterIP = "10.96.0.10"
)

type bed struct {
	t          *testing.T
	host, peer string
	hostNS     ns.NetNS
}

func newBed(t *testing.T) *bed {
	t.Helper()
	if testing.Short() {
		t.Skip("needs network namespaces")
	}
	b := &bed{t: t, host: fmt.Sprintf("kovnhn%d-h", os.Getpid()), peer: fmt.Sprintf("kovnhn%d-p", os.Getpid())}
	for _, n := range []string{b.host, b.peer} {
		_ = exec.Command("ip", "netns", "del", n).Run()
		b.run("ip", "netns", "add", n)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	h, p := []string{"ip", "-n", b.host}, []string{"ip", "-n", b.peer}
	b.run(append(h, "link", "set", "lo", "up")...)
	b.run(append(h, "addr", "add", nodeIP+"/32", "dev", "lo")...) // this kernel has no dummy links
	b.run(append(h, "link", "add", "mgmt0", "type", "veth", "peer", "name", "ovn0", "netns", b.peer)...)
	b.run(append(h, "addr", "add", mgmtIP+"/24", "dev", "mgmt0")...)
	b.run(append(h, "link", "set", "mgmt0", "up")...)
	b.run(append(h, "route", "add", "10.96.0.0/16", "via", "10.244.0.1", "dev", "mgmt0")...)
	// The node's uplink: its default route leads to nothing that answers, so only a translated connection to an
	// external IP is answered.
	b.run(append(h, "link", "add", "uplink", "type", "veth", "peer", "name", "uplinkp", "netns", b.peer)...)
	b.run(append(h, "addr", "add", "192.168.88.1/24", "dev", "uplink")...)
	b.run(append(h, "link", "set", "uplink", "up")...)
	b.run(append(p, "link", "set", "uplinkp", "up")...)
	b.run(append(h, "route", "add", "default", "via", "192.168.88.254")...)
	b.run(append(p, "link", "set", "lo", "up")...)
	b.run(append(p, "addr", "add", clusterIP+"/32", "dev", "lo")...)
	b.run(append(p, "addr", "add", "10.244.0.1/24", "dev", "ovn0")...)
	b.run(append(p, "link", "set", "ovn0", "up")...)
	var err error
	if b.hostNS, err = ns.GetNS("/run/netns/" + b.host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.hostNS.Close() })
	b.serve()
	return b
}

func (b *bed) run(args ...string) {
	b.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		b.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// serve answers TCP on clusterIP:80 and UDP on clusterIP:81 with the client address the server saw.
func (b *bed) serve() {
	peerNS, err := ns.GetNS("/run/netns/" + b.peer)
	if err != nil {
		b.t.Fatal(err)
	}
	defer peerNS.Close()
	var tl net.Listener
	var ul net.PacketConn
	if err := peerNS.Do(func(ns.NetNS) error {
		if tl, err = net.Listen("tcp", clusterIP+":80"); err != nil {
			return err
		}
		ul, err = net.ListenPacket("udp", clusterIP+":81")
		return err
	}); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = tl.Close(); _ = ul.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintln(c, c.RemoteAddr())
			_ = c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = ul.WriteTo([]byte(from.String()+"\n"), from)
		}
	}()
}

// dial connects from the host namespace and returns the client address the server reports.
func (b *bed) dial(proto, addr string) (string, error) {
	var line string
	err := b.hostNS.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout(proto, addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
		}
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

func (b *bed) open() *Table {
	b.t.Helper()
	tbl, err := Open(int(b.hostNS.Fd()), "mgmt0")
	if err != nil {
		b.t.Fatal(err)
	}
	return tbl
}

var (
	tcpRule = Rule{Proto: TCP, Port: 30080, Target: netip.MustParseAddrPort(clusterIP + ":80")}
	udpRule = Rule{Proto: UDP, Port: 30081, Target: netip.MustParseAddrPort(clusterIP + ":81")}
)

func TestHostReachesItsNodePorts(t *testing.T) {
	b := newBed(t)
	// Before kovn's table: nothing listens on the node port.
	if _, err := b.dial("tcp", nodeIP+":30080"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("before Sync: %v, want connection refused", err)
	}
	tbl := b.open()
	if err := tbl.Sync([]Rule{tcpRule, udpRule}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Check([]Rule{tcpRule, udpRule}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ proto, addr string }{{"tcp", nodeIP + ":30080"}, {"udp", nodeIP + ":30081"}} {
		got, err := b.dial(c.proto, c.addr)
		if err != nil {
			t.Fatalf("%s %s: %v", c.proto, c.addr, err)
		}
		// The answer came back (the peer has no route to the node IP) and the backend saw the management port.
		if ip, _, _ := strings.Cut(got, ":"); ip != mgmtIP {
			t.Errorf("%s %s: the server saw %s, want %s", c.proto, c.addr, got, mgmtIP)
		}
	}
	// Loopback is not a node address for NodePorts.
	if _, err := b.dial("tcp", "127.0.0.1:30080"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("127.0.0.1:30080: %v, want connection refused", err)
	}
	// A direct connection to the ClusterIP keeps the management port's address and is not translated again.
	if got, err := b.dial("tcp", clusterIP+":80"); err != nil || !strings.HasPrefix(got, mgmtIP+":") {
		t.Errorf("ClusterIP directly: %q, %v", got, err)
	}
}

func TestSyncReplacesAndRemoveCleansUp(t *testing.T) {
	b := newBed(t)
	tbl := b.open()
	conn, err := nftables.New(nftables.WithNetNSFd(int(b.hostNS.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	// An operator's table kovn must never touch.
	foreign := conn.AddTable(&nftables.Table{Name: "operator", Family: nftables.TableFamilyIPv4})
	conn.AddChain(&nftables.Chain{Name: "c", Table: foreign})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Sync([]Rule{tcpRule, udpRule, tcpRule}); err != nil { // the duplicate is written once
		t.Fatal(err)
	}
	if err := tbl.Check([]Rule{tcpRule, udpRule}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Sync([]Rule{udpRule}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.dial("tcp", nodeIP+":30080"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a NodePort no longer synced: %v, want connection refused", err)
	}
	if _, err := b.dial("udp", nodeIP+":30081"); err != nil {
		t.Errorf("the remaining Port: %v", err)
	}
	if err := tbl.Check([]Rule{tcpRule, udpRule}); err == nil {
		t.Error("Check passed with a rule missing")
	}
	// Flushed behind kovn's back: Check says so.
	conn.FlushTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Check([]Rule{udpRule}); err == nil {
		t.Error("Check passed on a flushed table")
	}
	for range 2 { // the second time the table is already gone
		if err := Remove(int(b.hostNS.Fd())); err != nil {
			t.Fatal(err)
		}
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range tables {
		names = append(names, x.Name)
	}
	if strings.Join(names, ",") != "operator" {
		t.Errorf("tables after Remove: %v, want only the operator's", names)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Open(0, ""); err == nil {
		t.Error("Open with no management interface succeeded")
	}
	if _, err := Open(0, "a-name-longer-than-15"); err == nil {
		t.Error("Open with a too long interface name succeeded")
	}
	tbl := &Table{mgmt: "mgmt0"} // Sync validates before it talks to the kernel
	for _, r := range []Rule{
		{Proto: 132, Port: 30080, Target: tcpRule.Target},
		{Proto: TCP, Target: tcpRule.Target},
		{Proto: TCP, Port: 30080, Target: netip.MustParseAddrPort("[fd00::1]:80")},
		{Proto: TCP, Port: 30080, Target: netip.MustParseAddrPort(clusterIP + ":0")},
		{Proto: TCP, IP: netip.MustParseAddr("fd00::1"), Port: 80, Target: tcpRule.Target},
	} {
		if err := tbl.Sync([]Rule{r}); err == nil {
			t.Errorf("Sync(%s) succeeded", r)
		}
	}
}

// Every NodePort of the default range, TCP and UDP: far more than one netlink message holds. Then one port
// changes its target and half of them go, while the others keep working.
func TestManyNodePorts(t *testing.T) {
	b := newBed(t)
	tbl := b.open()
	var rules []Rule
	for port := uint16(30000); port <= 32767; port++ {
		for _, p := range []Proto{TCP, UDP} {
			rules = append(rules, Rule{Proto: p, Port: port, Target: netip.MustParseAddrPort("10.96.1.1:80")})
		}
	}
	// 30080/tcp and 30081/udp lead to the test server instead.
	rules = append(rules, tcpRule, udpRule)
	rules = slices.DeleteFunc(rules, func(r Rule) bool {
		return (r.Port == 30080 && r.Target != tcpRule.Target) || (r.Port == 30081 && r.Target != udpRule.Target)
	})
	if err := tbl.Sync(rules); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Check(rules); err != nil {
		t.Fatal(err)
	}
	if _, err := b.dial("tcp", nodeIP+":30080"); err != nil {
		t.Fatal(err)
	}
	// 30080/tcp now leads to a port the server does not listen on, and the odd ports (but 30081) go.
	half := slices.DeleteFunc(slices.Clone(rules), func(r Rule) bool { return r.Port%2 == 1 && r.Port != 30081 })
	for i, r := range half {
		if r.Port == 30080 && r.Proto == TCP {
			half[i].Target = netip.MustParseAddrPort(clusterIP + ":82")
		}
	}
	if err := tbl.Sync(half); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Check(half); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Check(rules); err == nil {
		t.Error("Check of the old rules passed")
	}
	if _, err := b.dial("tcp", nodeIP+":30080"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("30080 after its target changed to a closed port: %v, want connection refused", err)
	}
	if _, err := b.dial("udp", nodeIP+":30081"); err != nil {
		t.Errorf("30081, kept: %v", err)
	}
}

// A connection from the host to a service's external IP is translated like a NodePort: answered by the service,
// which sees the management port; other ports of that IP are not.
func TestHostReachesExternalIPs(t *testing.T) {
	b := newBed(t)
	tbl := b.open()
	ext := netip.MustParseAddr("192.0.2.50")
	rules := []Rule{
		{Proto: TCP, IP: ext, Port: 8080, Target: tcpRule.Target},
		{Proto: UDP, IP: ext, Port: 8081, Target: udpRule.Target},
		tcpRule,
	}
	if _, err := b.dial("tcp", "192.0.2.50:8080"); err == nil {
		t.Fatal("the external IP answered before Sync")
	}
	if err := tbl.Sync(rules); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Check(rules); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ proto, addr string }{{"tcp", "192.0.2.50:8080"}, {"udp", "192.0.2.50:8081"}, {"tcp", nodeIP + ":30080"}} {
		got, err := b.dial(c.proto, c.addr)
		if err != nil {
			t.Fatalf("%s %s: %v", c.proto, c.addr, err)
		}
		if ip, _, _ := strings.Cut(got, ":"); ip != mgmtIP {
			t.Errorf("%s %s: the server saw %s, want %s", c.proto, c.addr, got, mgmtIP)
		}
	}
	if _, err := b.dial("tcp", "192.0.2.50:8081"); err == nil {
		t.Error("192.0.2.50:8081 over TCP answered: only UDP is a service port there")
	}
	// A NodePort rule does not catch the external IP, nor an external rule a local address.
	if _, err := b.dial("tcp", "192.0.2.50:30080"); err == nil {
		t.Error("the NodePort answered on the external IP")
	}
	if _, err := b.dial("tcp", nodeIP+":8080"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the external port on the node IP: %v, want connection refused", err)
	}
	if err := tbl.Sync([]Rule{tcpRule}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.dial("tcp", "192.0.2.50:8080"); err == nil {
		t.Error("the external IP still answers after its rule went")
	}
}
