package ovntest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/client"

	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
	ovsdbmodels "github.com/kovn-io/kovn/ovsdb-models"
)

var (
	ovsTemplate = &dbTemplate{schema: ovsdbmodels.OVSSchema}
	nodeSeq     atomic.Int64
)

// Node is a test node: a network namespace with its own Open_vSwitch ovsdb-server and ovs-vswitchd, whose run
// directory is private, so several nodes coexist on one machine.
type Node struct {
	Name  string
	Netns string // name under /var/run/netns
	Dir   string
	// DBRemote is the node's Open_vSwitch database ("unix:/path").
	DBRemote string
	// OVS is a connected client of the node's Open_vSwitch database.
	OVS client.Client

	procs []*proc
}

// NetnsPath is the node namespace's path, for code that enters it.
func (n *Node) NetnsPath() string { return "/var/run/netns/" + n.Netns }

// StartNode creates a network namespace (with loopback up) and starts ovsdb-server and ovs-vswitchd in it.
// Everything, the namespace included, is removed when tb ends.
func StartNode(tb testing.TB, name string) *Node {
	tb.Helper()
	dir, err := os.MkdirTemp("", "kovn-node-")
	if err != nil {
		tb.Fatal(err)
	}
	n := &Node{Name: name, Netns: fmt.Sprintf("kovnt%d-%d-%s", os.Getpid(), nodeSeq.Add(1), name), Dir: dir}
	tb.Cleanup(func() { n.stop(tb) })
	if err := n.start(); err != nil {
		tb.Fatalf("ovntest: node %s: %v", name, err)
	}
	return n
}

// sweepStaleNetns removes test-node namespaces of test binaries that died without cleaning up (their names
// carry the PID).
func sweepStaleNetns() {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		var pid, seq int
		if _, err := fmt.Sscanf(e.Name(), "kovnt%d-%d-", &pid, &seq); err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

func (n *Node) start() error {
	sweepStaleNetns()
	if out, err := exec.Command("ip", "netns", "add", n.Netns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", n.Netns, err, out)
	}
	if out, err := n.Exec("ip", "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("lo up: %v: %s", err, out)
	}
	data, err := ovsTemplate.get()
	if err != nil {
		return err
	}
	db := filepath.Join(n.Dir, "conf.db")
	if err := os.WriteFile(db, data, 0o600); err != nil {
		return err
	}
	sock := filepath.Join(n.Dir, "db.sock")
	p, err := n.startInNetns("ovsdb-server", "ovsdb-server", db, "--no-chdir", "--remote=punix:"+sock,
		"--unixctl="+filepath.Join(n.Dir, "ovsdb-server.ctl"), "--log-file="+filepath.Join(n.Dir, "ovsdb-server.log"))
	if err != nil {
		return err
	}
	if err := p.waitSocket(sock, 10*time.Second); err != nil {
		return err
	}
	n.DBRemote = "unix:" + sock
	// ovs-vswitchd initialises the Open_vSwitch row's other fields; the row itself must exist.
	if out, err := exec.Command("ovsdb-client", "transact", n.DBRemote,
		`["Open_vSwitch",{"op":"insert","table":"Open_vSwitch","row":{}}]`).CombinedOutput(); err != nil {
		return fmt.Errorf("create Open_vSwitch row: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n.OVS, err = ovndb.ConnectOVS(ctx, ovndb.Config{Address: n.DBRemote}); err != nil {
		return err
	}
	_, err = n.startInNetns("ovs-vswitchd", "ovs-vswitchd", n.DBRemote, "--no-chdir",
		"--unixctl="+filepath.Join(n.Dir, "ovs-vswitchd.ctl"), "--log-file="+filepath.Join(n.Dir, "ovs-vswitchd.log"))
	return err
}

// StartOVNController starts ovn-controller in the node, connected to its Open_vSwitch database. The node's
// Open_vSwitch external_ids (ovn-remote, encapsulation) must be set first, as the node agent does.
func (n *Node) StartOVNController() error {
	_, err := n.startInNetns("ovn-controller", "ovn-controller", n.DBRemote, "--no-chdir",
		"--log-file="+filepath.Join(n.Dir, "ovn-controller.log"))
	return err
}

// Exec runs a command inside the node's namespace.
func (n *Node) Exec(args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"netns", "exec", n.Netns}, args...)...).CombinedOutput()
}

// LogTail returns the last lines of a daemon's log ("ovs-vswitchd", "ovn-controller", ...).
func (n *Node) LogTail(name string) string { return tail(filepath.Join(n.Dir, name+".log"), 20) }

func (n *Node) startInNetns(name, bin string, args ...string) (*proc, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w (install openvswitch-switch and ovn-host, or run `make deps`)", name, err)
	}
	p, err := startProc(n.Dir, name, "ip", append([]string{"netns", "exec", n.Netns, path}, args...)...)
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, p)
	return p, nil
}

func (n *Node) stop(tb testing.TB) {
	if n.OVS != nil {
		n.OVS.Close()
	}
	for i := len(n.procs) - 1; i >= 0; i-- {
		if err := n.procs[i].stop(); err != nil {
			tb.Logf("ovntest: %v", err)
		}
	}
	if tb.Failed() {
		for _, p := range n.procs {
			tb.Logf("ovntest: node %s: last lines of %s.log:\n%s", n.Name, p.name, n.LogTail(p.name))
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.Netns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
		tb.Logf("ovntest: ip netns del %s: %v: %s", n.Netns, err, out)
	}
	_ = os.RemoveAll(n.Dir)
}

// Stop stops one of the node's daemons ("ovsdb-server", "ovs-vswitchd", "ovn-controller"), to test how kovn
// behaves when it dies.
func (n *Node) Stop(name string) error {
	for _, p := range n.procs {
		if p.name == name {
			return p.stop()
		}
	}
	return fmt.Errorf("node %s runs no %s", n.Name, name)
}
