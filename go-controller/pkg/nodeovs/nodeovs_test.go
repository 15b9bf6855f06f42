package nodeovs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

func settings() Settings {
	return Settings{SystemID: "node1", OVNRemote: "unix:/nonexistent/sb.sock", EncapType: "geneve", EncapIP: "192.168.100.1",
		Bridge: "br-int", DatapathType: "netdev"}
}

func TestConfigureAndPortsOnARealVswitchd(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ovs-vswitchd and network namespaces")
	}
	n := ovntest.StartNode(t, "n1")
	ctx := context.Background()
	if err := Configure(ctx, n.OVS, settings()); err != nil {
		t.Fatal(err)
	}
	// Again: nothing to change, no error.
	if err := Configure(ctx, n.OVS, settings()); err != nil {
		t.Fatal(err)
	}
	root, _ := openvSwitchRow(n.OVS)
	for k, v := range settings().ExternalIDs() {
		if root.ExternalIDs[k] != v {
			t.Errorf("external_ids[%s] = %q, want %q", k, root.ExternalIDs[k], v)
		}
	}
	br, _ := nbops.Lookup(n.OVS, &vswitchd.Bridge{Name: "br-int"})
	if br == nil || br.DatapathType != "netdev" || br.FailMode == nil || *br.FailMode != "secure" || br.OtherConfig["disable-in-band"] != "true" {
		t.Fatalf("bridge: %+v", br)
	}
	// A changed setting replaces the old value and keeps the other keys.
	s := settings()
	s.EncapType = "vxlan"
	if err := Configure(ctx, n.OVS, s); err != nil {
		t.Fatal(err)
	}
	root, _ = openvSwitchRow(n.OVS)
	if root.ExternalIDs["ovn-encap-type"] != "vxlan" || root.ExternalIDs["system-id"] != "node1" {
		t.Fatalf("external_ids after change: %v", root.ExternalIDs)
	}

	// An internal port: ovs-vswitchd creates the device in the node's namespace with the requested MAC.
	spec := PortSpec{Name: "kovn-mp0", Type: "internal", MAC: "0a:58:0a:f4:00:02", ExternalIDs: map[string]string{KeyIfaceID: "k8s-node1"}}
	if err := EnsurePort(ctx, n.OVS, "br-int", spec); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePort(ctx, n.OVS, "br-int", spec); err != nil {
		t.Fatalf("second EnsurePort: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var out []byte
	for time.Now().Before(deadline) {
		out, _ = n.Exec("ip", "link", "show", "kovn-mp0")
		if strings.Contains(string(out), "0a:58:0a:f4:00:02") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(string(out), "0a:58:0a:f4:00:02") {
		t.Fatalf("internal port device not created with its MAC: %s", out)
	}
	iface, _ := Interface(n.OVS, "kovn-mp0")
	if iface == nil || iface.ExternalIDs[KeyIfaceID] != "k8s-node1" {
		t.Fatalf("interface: %+v", iface)
	}
	br, _ = nbops.Lookup(n.OVS, &vswitchd.Bridge{Name: "br-int"})
	if len(br.Ports) != 2 {
		t.Fatalf("bridge has %d ports, want 2", len(br.Ports))
	}
	if err := DeletePort(ctx, n.OVS, "kovn-mp0"); err != nil {
		t.Fatal(err)
	}
	if err := DeletePort(ctx, n.OVS, "kovn-mp0"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if iface, _ := Interface(n.OVS, "kovn-mp0"); iface != nil {
		t.Fatal("interface left after DeletePort")
	}
}

func TestInstallWatcherTimesOutWithAClearError(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ovs-vswitchd and network namespaces")
	}
	n := ovntest.StartNode(t, "n2")
	w := NewInstallWatcher(n.OVS)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := w.Wait(ctx, "nothing-here")
	if err == nil || !strings.Contains(err.Error(), "did not install port nothing-here") {
		t.Fatalf("got %v", err)
	}
	// ovn-controller's mark (written here by hand) releases a waiter.
	if err := Configure(context.Background(), n.OVS, settings()); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePort(context.Background(), n.OVS, "br-int", PortSpec{Name: "p1", Type: "internal"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Wait(context.Background(), "p1") }()
	iface, _ := Interface(n.OVS, "p1")
	ops, err := n.OVS.Where(iface).Mutate(iface, mutationInstalled(iface))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nbops.Transact(context.Background(), n.OVS, ops); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not released by ovn-installed=true")
	}
	// Ensuring the port again (an agent restart) keeps ovn-controller's mark.
	if err := EnsurePort(context.Background(), n.OVS, "br-int", PortSpec{Name: "p1", Type: "internal", ExternalIDs: map[string]string{KeyIfaceID: "x"}}); err != nil {
		t.Fatal(err)
	}
	if iface, _ := Interface(n.OVS, "p1"); iface.ExternalIDs[KeyOVNInstalled] != "true" || iface.ExternalIDs[KeyIfaceID] != "x" {
		t.Fatalf("external_ids after EnsurePort again: %v", iface.ExternalIDs)
	}
}

func mutationInstalled(iface *vswitchd.Interface) model.Mutation {
	return model.Mutation{Field: &iface.ExternalIDs, Mutator: ovsdb.MutateOperationInsert, Value: map[string]string{KeyOVNInstalled: "true"}}
}
