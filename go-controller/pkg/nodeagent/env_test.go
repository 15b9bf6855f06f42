package nodeagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/controller"
	"github.com/kovn-io/kovn/go-controller/pkg/kubecp"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
)

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// buildPlugin builds kovn-cni once per test binary, as the runtime will execute it.
func buildPlugin(t testing.TB) string {
	pluginOnce.Do(func() {
		pluginDir, pluginErr = os.MkdirTemp("", "kovn-cni-bin-")
		if pluginErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "kovn-cni"), "github.com/kovn-io/kovn/cni").CombinedOutput()
		if err != nil {
			pluginErr = fmt.Errorf("build kovn-cni: %v: %s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginDir
}

// cluster is one real node of a real cluster: apiserver, OVN central, the kovn controller, and a node namespace
// with ovs-vswitchd, ovn-controller and the kovn node agent.
type cluster struct {
	t       testing.TB
	kube    kubernetes.Interface
	ovn     *ovntest.OVN
	node    *ovntest.Node
	cfg     config.Cluster
	socket  string
	confDir string
	binDir  string
	cni     *libcni.CNIConfig
	conf    *libcni.NetworkConfigList
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newCluster(t testing.TB, startAgent bool) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real apiserver, OVN and OVS")
	}
	if os.Getenv("KOVN_KUBE_BIN") == "" {
		t.Fatal("KOVN_KUBE_BIN is not set: run the tests with `make test`")
	}
	c := &cluster{t: t, cfg: config.Default()}
	dir, err := os.MkdirTemp("", "kovn-na-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cp, err := kubecp.Start(context.Background(), kubecp.Options{Dir: filepath.Join(dir, "kube"), DieWithParent: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	if c.kube, err = kubernetes.NewForConfig(cp.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	c.ovn = ovntest.Start(t, ovntest.Options{Northd: true})
	c.node = ovntest.StartNode(t, "node1")
	c.socket = filepath.Join(dir, "cni.sock")
	c.confDir, c.binDir = filepath.Join(dir, "net.d"), buildPlugin(t)
	c.startController()
	c.createNode("node1")
	if startAgent {
		c.startAgent()
	}
	return c
}

func (c *cluster) startController() {
	ctx, cancel := context.WithCancel(context.Background())
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	ctrl, err := controller.New(controller.Config{Cluster: c.cfg, NB: c.ovn.NB, Kube: c.kube, Logger: testLogger(c.t),
		Recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kovn-controller"})})
	if err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = ctrl.Run(ctx) }()
	c.t.Cleanup(func() { cancel(); <-done; b.Shutdown() })
}

// startAgent runs the node agent for node1 (in the node's namespace) and ovn-controller, and waits until the
// agent reports ready (management port installed).
func (c *cluster) startAgent() {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{
		NodeName: "node1", Cluster: c.cfg, Kube: c.kube, OVSRemote: c.node.DBRemote,
		OVS:       nodeovs.Settings{OVNRemote: c.ovn.SBRemote, EncapIP: "192.168.77.1", DatapathType: "netdev"},
		HostNetns: c.node.NetnsPath(), CNISocket: c.socket,
		CNIConfFile: filepath.Join(c.confDir, "10-kovn.conflist"), Logger: testLogger(c.t),
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	c.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("node agent: %v", err)
		}
	})
	if err := c.waitFile(cfg.CNIConfFile); err != nil {
		c.t.Fatal(err)
	}
	if err := c.node.StartOVNController(); err != nil {
		c.t.Fatal(err)
	}
	data, err := os.ReadFile(cfg.CNIConfFile)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.conf, err = libcni.ConfListFromBytes(data); err != nil {
		c.t.Fatal(err)
	}
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{c.binDir}, filepath.Join(filepath.Dir(c.socket), "cache"), nil)
	c.eventually("node agent ready (STATUS)", func() (bool, string) {
		err := c.cni.GetStatusNetworkList(context.Background(), c.conf)
		return err == nil, fmt.Sprint(err)
	})
}

func (c *cluster) waitFile(path string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s never appeared", path)
}

func (c *cluster) eventually(what string, cond func() (bool, string)) {
	c.t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	c.t.Fatalf("timed out waiting for %s; last: %s\novn-controller:\n%s", what, last, c.node.LogTail("ovn-controller"))
}

func (c *cluster) createNode(name string) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.kube.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// createPod creates a pod on node1 and waits for the controller's network annotation.
func (c *cluster) createPod(ns, name string) (*corev1.Pod, annotations.PodNetwork) {
	c.t.Helper()
	ctx := context.Background()
	if _, err := c.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			c.t.Fatal(err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
		if _, err := c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			c.t.Fatal(err)
		}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test"}}}}
	if _, err := c.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	var net annotations.PodNetwork
	c.eventually("network of "+ns+"/"+name, func() (bool, string) {
		got, err := c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		p = got
		n, ok, err := annotations.ParsePodNetwork(got.Annotations)
		net = n
		return ok && err == nil, fmt.Sprint(err)
	})
	return p, net
}

// sandbox is a pod network namespace, as the runtime creates one per pod sandbox.
type sandbox struct {
	id, netns, name string
	pod             *corev1.Pod
}

var sandboxSeq int

func (c *cluster) newSandbox(pod *corev1.Pod) *sandbox {
	c.t.Helper()
	sandboxSeq++
	name := fmt.Sprintf("kovns%d-%d", os.Getpid()%100000, sandboxSeq)
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		c.t.Fatalf("ip netns add: %v: %s", err, out)
	}
	c.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	_ = exec.Command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up").Run()
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	return &sandbox{id: hex.EncodeToString(id), netns: "/var/run/netns/" + name, name: name, pod: pod}
}

func (c *cluster) rt(s *sandbox) *libcni.RuntimeConf {
	args := [][2]string{{"IgnoreUnknown", "1"}}
	if s.pod != nil {
		args = append(args, [2]string{"K8S_POD_NAMESPACE", s.pod.Namespace}, [2]string{"K8S_POD_NAME", s.pod.Name},
			[2]string{"K8S_POD_UID", string(s.pod.UID)}, [2]string{"K8S_POD_INFRA_CONTAINER_ID", s.id})
	}
	return &libcni.RuntimeConf{ContainerID: s.id, NetNS: s.netns, IfName: "eth0", Args: args}
}

// exec runs a command in a namespace and returns its combined output.
func inNetns(netnsName string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", netnsName}, args...)...).CombinedOutput()
	return string(out), err
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
