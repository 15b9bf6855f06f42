package sandbox

import (
	"context"
	"fmt"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
	ovsdbmodels "github.com/kovn-io/kovn/ovsdb-models"
)

const underlayMTU = 1500

func upNodes(ctx context.Context, s *State, o Options) error {
	for i := 1; i <= o.Nodes; i++ {
		if err := upNode(ctx, s, o, i); err != nil {
			return fmt.Errorf("%s: %w", nodeName(i), err)
		}
	}
	return nil
}

// upNode creates one node: its namespace on the underlay with the node IP on its NIC, OVS, ovn-controller, the
// kovn node agent (which moves the node IP onto the external bridge br-ex, where the userspace tunnels and the
// node's gateway router need it) and the kubelet.
func upNode(ctx context.Context, s *State, o Options, i int) error {
	name := nodeName(i)
	n := Node{Name: name, Netns: nsPrefix + name, IP: underlayNet + strconv.Itoa(10+i), Dir: filepath.Join(o.Dir, "nodes", name)}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	if err := namedns.Create(n.Netns); err != nil {
		return err
	}
	s.Netns = append(s.Netns, n.Netns)
	s.Nodes = append(s.Nodes, n)
	if err := s.save(); err != nil {
		return err
	}
	// The node's NIC, plugged into the underlay switch. Checksum offload off on the switch side (see the notes
	// on the userspace datapath).
	if err := veth(n.Netns, "eth0", underlayNS, "v"+name, underlayMTU); err != nil {
		return err
	}
	if err := setUp(underlayNS, "v"+name, underlayBr, ""); err != nil {
		return err
	}
	if err := namedns.Do(underlayNS, func() error { return podnet.SetTxChecksum("v"+name, false) }); err != nil {
		return err
	}
	env := rundirEnv(n.Dir)
	db := filepath.Join(n.Dir, "conf.db")
	if err := createDB(db, ovsdbmodels.OVSSchema); err != nil {
		return err
	}
	sock := filepath.Join(n.Dir, "db.sock")
	if _, err := s.start(name+"-ovsdb-server", n.Netns, env, "ovsdb-server", db, "--no-chdir", "--remote=punix:"+sock,
		"--unixctl="+filepath.Join(n.Dir, "ovsdb-server.ctl"), "--log-file="+filepath.Join(n.Dir, "ovsdb-server.log")); err != nil {
		return err
	}
	if err := waitSocket(ctx, sock); err != nil {
		return err
	}
	// --monitor restarts ovs-vswitchd if it crashes (OVS 3.1.0's userspace conntrack can hit an assertion in
	// conn_update_state under heavy connection churn); kovn node restores what the restart loses.
	if _, err := s.start(name+"-ovs-vswitchd", n.Netns, env, "ovs-vswitchd", "unix:"+sock, "--no-chdir", "--monitor",
		"--unixctl="+filepath.Join(n.Dir, "ovs-vswitchd.ctl"), "--log-file="+filepath.Join(n.Dir, "ovs-vswitchd.log")); err != nil {
		return err
	}
	settings := nodeovs.Settings{SystemID: name, OVNRemote: "tcp:" + centralIP + ":6642", EncapType: o.Encap, EncapIP: n.IP,
		Bridge: "br-int", DatapathType: "netdev"}
	if err := setupUplink(ctx, n, sock, settings); err != nil {
		return err
	}
	if _, err := s.start(name+"-ovn-controller", n.Netns, env, "ovn-controller", "unix:"+sock, "--no-chdir",
		"--log-file="+filepath.Join(n.Dir, "ovn-controller.log")); err != nil {
		return err
	}
	cni := []string{"--cni-socket=" + filepath.Join(n.Dir, "cni.sock"), "--cni-conf-file=" + filepath.Join(n.Dir, "net.d", "10-kovn.conflist"),
		"--cni-bin-dir=" + filepath.Join(n.Dir, "bin"), "--cni-plugin=" + o.CNI}
	if _, err := s.start(name+"-kovn-node", "", nil, o.Kovn, append([]string{"node", "--node-name=" + name,
		"--kubeconfig=" + s.Kubeconfig, "--host-netns=/var/run/netns/" + n.Netns, "--ovs-address=unix:" + sock,
		"--ovn-remote=" + settings.OVNRemote, "--encap-ip=" + n.IP, "--encap=" + o.Encap, "--datapath-type=netdev",
		"--gateway-interface=eth0", "--gateway-nexthop=" + ExternalIP, "--ovs-rundir=" + n.Dir,
		"--metrics-address=127.0.0.1:" + strconv.Itoa(9475+i)}, cni...)...); err != nil {
		return err
	}
	_, err := s.start(name+"-kubelet", "", nil, o.Kovn, "sandbox", "kubelet", "--node-name="+name, "--node-ip="+n.IP,
		"--kubeconfig="+s.Kubeconfig, "--dir="+n.Dir, "--kovn="+o.Kovn)
	return err
}

// setupUplink configures OVS for OVN and gives the node's NIC the node IP and a default route through the
// external host, as a machine has them before kovn runs.
func setupUplink(ctx context.Context, n Node, sock string, settings nodeovs.Settings) error {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := ovndb.ConnectOVS(cctx, ovndb.Config{Address: "unix:" + sock})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := nodeovs.Configure(cctx, c, settings); err != nil {
		return err
	}
	if err := setUp(n.Netns, "eth0", "", n.IP+underlayBits); err != nil {
		return err
	}
	return defaultRoute(n.Netns, "eth0", ExternalIP)
}

// warmTunnels makes every node ping every other over the underlay, so OVS's userspace tunnelling has learnt the
// peers' MACs before the first pod packet (an unknown peer drops it).
func warmTunnels(_ context.Context, s *State, _ Options) error {
	for _, a := range s.Nodes {
		for _, b := range s.Nodes {
			if a.Name == b.Name {
				continue
			}
			var out []byte
			var err error
			for try := 0; try < 20; try++ {
				if out, err = exec.Command("ip", "netns", "exec", a.Netns, "ping", "-c", "1", "-W", "1", b.IP).CombinedOutput(); err == nil {
					break
				}
			}
			if err != nil {
				return fmt.Errorf("underlay: %s cannot reach %s: %s", a.Name, b.IP, out)
			}
		}
	}
	return nil
}

// waitReady waits until every node is Ready (its kubelet marks it so once the CNI plugin answers STATUS).
func waitReady(ctx context.Context, s *State, o Options) error {
	kube, err := Client(s)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		ready := 0
		if err == nil {
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		if ready == o.Nodes {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes Ready after 3 minutes (err %v)", ready, o.Nodes, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Client returns a Kubernetes client for the sandbox.
func Client(s *State) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	return kubernetes.NewForConfig(cfg)
}
