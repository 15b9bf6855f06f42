package podnet

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
)

// netns creates a named network namespace removed at the end of the test.
func netns(t *testing.T, name string) string {
	t.Helper()
	name = fmt.Sprintf("kovnp%d-%s", os.Getpid()%100000, name)
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/var/run/netns/" + name
}

func inNetns(t *testing.T, path string, args ...string) string {
	t.Helper()
	name := path[strings.LastIndex(path, "/")+1:]
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

func TestSetupCheckTeardown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs network namespaces")
	}
	hostPath, podPath := netns(t, "host"), netns(t, "pod")
	hostNS, err := ns.GetNS(hostPath)
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	a := Attachment{
		Netns: podPath, IfName: "eth0", HostName: HostVethName("0123456789abcdef0123"),
		Network: annotations.PodNetwork{
			IPs: []netip.Prefix{netip.MustParsePrefix("10.244.1.5/24")}, MAC: "0a:58:0a:f4:01:05",
			Gateways: []netip.Addr{netip.MustParseAddr("10.244.1.1")}, MTU: 1400,
			Routes: []annotations.Route{{Dest: netip.MustParsePrefix("10.96.0.0/16"), NextHop: netip.MustParseAddr("10.244.1.1")}},
		},
		NoTxChecksum: true,
	}
	if a.HostName != "0123456789abcde" {
		t.Fatalf("host name %q", a.HostName)
	}
	res, err := Setup(hostNS, a)
	if err != nil {
		t.Fatal(err)
	}
	if res.PodMAC.String() != "0a:58:0a:f4:01:05" {
		t.Fatalf("pod MAC %s", res.PodMAC)
	}
	if err := Check(hostNS, a); err != nil {
		t.Fatal(err)
	}
	link := inNetns(t, podPath, "ip", "-o", "addr", "show", "eth0")
	routes := inNetns(t, podPath, "ip", "route")
	for _, want := range []string{"10.244.1.5/24"} {
		if !strings.Contains(link, want) {
			t.Errorf("pod eth0 lacks %s: %s", want, link)
		}
	}
	for _, want := range []string{"default via 10.244.1.1 dev eth0", "10.96.0.0/16 via 10.244.1.1"} {
		if !strings.Contains(routes, want) {
			t.Errorf("pod routes lack %q: %s", want, routes)
		}
	}
	if mtu := inNetns(t, podPath, "cat", "/sys/class/net/eth0/mtu"); strings.TrimSpace(mtu) != "1400" {
		t.Errorf("pod MTU %s", mtu)
	}
	var txOn bool
	_ = ns.WithNetNSPath(podPath, func(ns.NetNS) error { txOn, err = TxChecksum("eth0"); return err })
	if err != nil || txOn {
		t.Errorf("tx checksum offload still on in the pod (err %v)", err)
	}
	host := inNetns(t, hostPath, "ip", "link", "show", a.HostName)
	if !strings.Contains(host, "NOARP") || !strings.Contains(host, "UP") {
		t.Errorf("host veth not up with ARP off: %s", host)
	}
	// ADD again for the same attachment starts clean.
	if _, err := Setup(hostNS, a); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	if err := Teardown(hostNS, podPath, "eth0", a.HostName); err != nil {
		t.Fatal(err)
	}
	if err := Check(hostNS, a); err == nil {
		t.Fatal("Check passed after Teardown")
	}
	if err := Teardown(hostNS, podPath, "eth0", a.HostName); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if err := Teardown(hostNS, "/var/run/netns/does-not-exist", "eth0", a.HostName); err != nil {
		t.Fatalf("Teardown with the namespace gone: %v", err)
	}
}

func TestSetupIntoMissingNamespaceFails(t *testing.T) {
	if testing.Short() {
		t.Skip("needs network namespaces")
	}
	hostNS, _ := ns.GetCurrentNS()
	a := Attachment{Netns: "/var/run/netns/kovn-missing", IfName: "eth0", HostName: "kovnmissing0",
		Network: annotations.PodNetwork{IPs: []netip.Prefix{netip.MustParsePrefix("10.244.1.5/24")}, MAC: "0a:58:0a:f4:01:05", MTU: 1400}}
	_, err := Setup(hostNS, a)
	if err == nil || !strings.Contains(err.Error(), "kovn-missing") {
		t.Fatalf("want an error naming the namespace, got %v", err)
	}
}
