// Package sandbox brings up a real multi-node kovn cluster on one Linux machine: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler; OVN central (NB, SB, ovn-northd) in an "underlay" network namespace
// that also holds the switch between nodes; the kovn controller; and per node a network namespace with its own
// ovsdb-server, ovs-vswitchd (userspace datapath), ovn-controller, kovn node agent and a kubelet stand-in that
// runs pods as network namespaces wired through the real CNI plugin. Everything lives under one state directory
// and `Down` removes it all, also after an `Up` that crashed halfway.
package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kovn-io/kovn/go-controller/pkg/kubecp"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
	ovsdbmodels "github.com/kovn-io/kovn/ovsdb-models"
)

// Prefix of every network namespace the sandbox creates.
const nsPrefix = "kovnsb-"

// Underlay addressing: the central services sit on .1, node i on .(10+i).
const (
	underlayNS  = nsPrefix + "underlay"
	underlayBr  = "br0"
	underlayNet = "192.168.230."
	centralIP   = underlayNet + "1"
	// ExternalIP is the sandbox's stand-in for the world outside the cluster: a host on the underlay.
	ExternalIP   = underlayNet + "254"
	externalNS   = nsPrefix + "external"
	underlayBits = "/24"
)

// Options configure `Up`.
type Options struct {
	Dir     string // state directory
	Nodes   int
	Encap   string // geneve or vxlan
	KubeBin string // etcd, kube-apiserver, ... (default $KOVN_KUBE_BIN)
	Kovn    string // the kovn binary (default: this executable)
	CNI     string // the kovn-cni binary (default: kovn-cni next to Kovn)
	Logger  *slog.Logger
}

// Up creates the sandbox and waits until every node is Ready.
func Up(ctx context.Context, o Options) (*State, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(statePath(o.Dir)); err == nil {
		return nil, fmt.Errorf("a sandbox already exists in %s: run `kovn sandbox down` first", o.Dir)
	}
	for _, d := range []string{"logs", "kube", "ovn"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	s := &State{Dir: o.Dir, Encap: o.Encap}
	if err := s.save(); err != nil {
		return nil, err
	}
	start := time.Now()
	steps := []struct {
		what string
		run  func(context.Context, *State, Options) error
	}{
		{"control plane", upControlPlane},
		{"underlay and OVN central", upCentral},
		{"kovn controller", upController},
		{"external host", upExternal},
		{"nodes", upNodes},
		{"nodes ready", waitReady},
		{"tunnels", warmTunnels},
	}
	for _, st := range steps {
		t := time.Now()
		if err := st.run(ctx, s, o); err != nil {
			return s, fmt.Errorf("%s: %w (logs in %s; `kovn sandbox down --state-dir %s` cleans up)", st.what, err, filepath.Join(o.Dir, "logs"), o.Dir)
		}
		o.Logger.Info("up: "+st.what, "took", time.Since(t).Round(time.Millisecond))
	}
	o.Logger.Info("sandbox up", "nodes", o.Nodes, "took", time.Since(start).Round(time.Millisecond), "kubeconfig", s.Kubeconfig)
	return s, nil
}

func (o *Options) defaults() error {
	if o.Nodes <= 0 || o.Nodes > 50 {
		return fmt.Errorf("--nodes %d: want 1 to 50", o.Nodes)
	}
	if o.Encap == "" {
		o.Encap = "geneve"
	}
	if o.Encap != "geneve" && o.Encap != "vxlan" {
		return fmt.Errorf("--encap %q: want geneve or vxlan", o.Encap)
	}
	if o.KubeBin == "" {
		o.KubeBin = os.Getenv("KOVN_KUBE_BIN")
	}
	if o.KubeBin == "" {
		return fmt.Errorf("the Kubernetes binaries are not found: set KOVN_KUBE_BIN or use `make sandbox`")
	}
	if o.Kovn == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.Kovn = self
	}
	if o.CNI == "" {
		o.CNI = filepath.Join(filepath.Dir(o.Kovn), "kovn-cni")
	}
	if _, err := os.Stat(o.CNI); err != nil {
		return fmt.Errorf("kovn-cni: %w (build it with `make build`)", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	abs, err := filepath.Abs(o.Dir)
	o.Dir = abs
	return err
}

func upControlPlane(ctx context.Context, s *State, o Options) error {
	cp, err := kubecp.Start(ctx, kubecp.Options{BinDir: o.KubeBin, Dir: filepath.Join(o.Dir, "kube"),
		ControllerManager: true, Scheduler: true})
	if cp != nil {
		for name, pid := range cp.PIDs() {
			s.Procs = append(s.Procs, Proc{Name: name, PID: pid, Log: filepath.Join(o.Dir, "kube", name+".log")})
		}
		cp.Release()
	}
	if err != nil {
		_ = s.save()
		return err
	}
	s.Kubeconfig, s.APIServer = cp.Kubeconfig, cp.URL
	return s.save()
}

// upCentral creates the underlay (a namespace holding the bridge between nodes) and runs OVN central there.
func upCentral(ctx context.Context, s *State, o Options) error {
	if err := namedns.Create(underlayNS); err != nil {
		return err
	}
	s.Netns = append(s.Netns, underlayNS)
	if err := s.save(); err != nil {
		return err
	}
	if err := bridge(underlayNS, underlayBr); err != nil {
		return err
	}
	if err := setUp(underlayNS, underlayBr, "", centralIP+underlayBits); err != nil {
		return err
	}
	dir := filepath.Join(o.Dir, "ovn")
	env := rundirEnv(dir)
	for _, db := range []struct {
		name, port string
		schema     []byte
	}{{"nb", "6641", ovsdbmodels.NBSchema}, {"sb", "6642", ovsdbmodels.SBSchema}} {
		path := filepath.Join(dir, db.name+".db")
		if err := createDB(path, db.schema); err != nil {
			return err
		}
		sock := filepath.Join(dir, db.name+".sock")
		if _, err := s.start("ovsdb-"+db.name, underlayNS, env, "ovsdb-server", path, "--no-chdir",
			"--remote=punix:"+sock, "--remote=ptcp:"+db.port+":"+centralIP,
			"--unixctl="+filepath.Join(dir, db.name+".ctl"), "--log-file="+filepath.Join(dir, db.name+".log")); err != nil {
			return err
		}
		if err := waitSocket(ctx, sock); err != nil {
			return err
		}
	}
	_, err := s.start("ovn-northd", underlayNS, env, "ovn-northd", "--no-chdir",
		"--ovnnb-db=unix:"+filepath.Join(dir, "nb.sock"), "--ovnsb-db=unix:"+filepath.Join(dir, "sb.sock"),
		"--unixctl="+filepath.Join(dir, "northd.ctl"), "--log-file="+filepath.Join(dir, "northd.log"))
	return err
}

// NoSNATIP is an address of the external host in NoSNATDestinations, the range the sandbox's controller exempts
// from egress SNAT (pods reach it with their own IPs).
const (
	NoSNATIP           = "192.168.232.1"
	NoSNATDestinations = "192.168.232.0/24"
)

// SNATPortRange is the sandbox's egress SNAT port range: apart from Linux's ephemeral ports (32768-60999), so pod
// connections SNATed to a node IP never collide with the node's own, as an operator would configure it.
const SNATPortRange = "20000-29999"

func upController(_ context.Context, s *State, o Options) error {
	_, err := s.start("kovn-controller", "", nil, o.Kovn, "controller", "--kubeconfig="+s.Kubeconfig,
		"--nb-address=unix:"+filepath.Join(o.Dir, "ovn", "nb.sock"), "--encap="+o.Encap, "--snat-port-range="+SNATPortRange,
		"--no-snat-destinations="+NoSNATDestinations)
	return err
}

// upExternal creates the external host: a namespace on the underlay with a server that answers with the client
// address it saw (TCP 80, UDP 81), so tests can tell whose address traffic leaving the cluster carries.
func upExternal(_ context.Context, s *State, o Options) error {
	if err := namedns.Create(externalNS); err != nil {
		return err
	}
	s.Netns = append(s.Netns, externalNS)
	if err := s.save(); err != nil {
		return err
	}
	if err := veth(externalNS, "eth0", underlayNS, "vexternal", underlayMTU); err != nil {
		return err
	}
	if err := setUp(underlayNS, "vexternal", underlayBr, ""); err != nil {
		return err
	}
	if err := setUp(externalNS, "eth0", "", ExternalIP+underlayBits); err != nil {
		return err
	}
	// A second address of the world, in a range the controller exempts from egress SNAT.
	if err := setUp(externalNS, "eth0", "", NoSNATIP+"/32"); err != nil {
		return err
	}
	_, err := s.start("external-server", externalNS, nil, o.Kovn, "sandbox", "workload", "--name=external", "--tcp=80", "--udp=81")
	return err
}

// rundirEnv keeps a daemon's run, log and database files in dir, never in the system's directories.
func rundirEnv(dir string) []string {
	return []string{"OVS_RUNDIR=" + dir, "OVS_LOGDIR=" + dir, "OVS_DBDIR=" + dir, "OVS_SYSCONFDIR=" + dir,
		"OVN_RUNDIR=" + dir, "OVN_LOGDIR=" + dir, "OVN_DBDIR=" + dir, "OVN_SYSCONFDIR=" + dir}
}

// createDB creates an empty OVSDB database file for a schema with ovsdb-tool.
func createDB(path string, schema []byte) error {
	sp := path + ".schema"
	if err := os.WriteFile(sp, schema, 0o644); err != nil {
		return err
	}
	_ = os.Remove(path)
	if out, err := exec.Command("ovsdb-tool", "create", path, sp).CombinedOutput(); err != nil {
		return fmt.Errorf("ovsdb-tool create %s: %v: %s", path, err, out)
	}
	return nil
}

func waitSocket(ctx context.Context, path string) error {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s did not appear within 20s", path)
}

func nodeName(i int) string { return "node" + strconv.Itoa(i) }
