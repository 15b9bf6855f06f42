package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/workload"
)

func TestPodToPodSameNodeAndAcrossNodes(t *testing.T) {
	namespace(t, "e2e-conn")
	createPod(t, "e2e-conn", "a1", "node1")
	createPod(t, "e2e-conn", "a2", "node1")
	createPod(t, "e2e-conn", "c1", "node3")
	a1, a2, c1 := waitRunning(t, "e2e-conn", "a1"), waitRunning(t, "e2e-conn", "a2"), waitRunning(t, "e2e-conn", "c1")
	if a1.Node != "node1" || c1.Node != "node3" {
		t.Fatalf("placement: a1 on %s, c1 on %s", a1.Node, c1.Node)
	}
	for _, pair := range [][2]pod{{a1, a2}, {a2, a1}, {a1, c1}, {c1, a1}, {a2, c1}} {
		for _, proto := range []string{"tcp", "udp"} {
			r := mustReach(t, pair[0], pair[1], proto)
			// No NAT between pods: the server sees the client's pod IP.
			if !strings.HasPrefix(r.Client, pair[0].IP+":") {
				t.Errorf("%s -> %s over %s: server saw client %s, want %s", pair[0].key(), pair[1].key(), proto, r.Client, pair[0].IP)
			}
		}
		if err := ping(podNetnsName(t, pair[0]), pair[1].IP); err != nil {
			t.Errorf("ping %s -> %s (%s): %v", pair[0].key(), pair[1].key(), pair[1].IP, err)
		}
	}
}

func TestNodeToPod(t *testing.T) {
	namespace(t, "e2e-node")
	createPod(t, "e2e-node", "p", "node2")
	p := waitRunning(t, "e2e-node", "p")
	for _, node := range []string{"node1", "node2", "node3"} {
		if err := ping(nodeNetns(node), p.IP); err != nil {
			t.Errorf("%s cannot ping pod %s (%s on node2): %v", node, p.key(), p.IP, err)
		}
	}
}

func TestDeletedPodFreesItsIPForTheNext(t *testing.T) {
	namespace(t, "e2e-reuse")
	createPod(t, "e2e-reuse", "first", "node2")
	first := waitRunning(t, "e2e-reuse", "first")
	deletePod(t, first)
	createPod(t, "e2e-reuse", "second", "node2")
	second := waitRunning(t, "e2e-reuse", "second")
	if second.IP != first.IP {
		t.Fatalf("the deleted pod's IP %s was not reused: the new pod on node2 got %s", first.IP, second.IP)
	}
	createPod(t, "e2e-reuse", "peer", "node1")
	peer := waitRunning(t, "e2e-reuse", "peer")
	mustReach(t, peer, second, "tcp")
	mustReach(t, second, peer, "tcp")
}

func Test30PodsAcross3NodesAllReachEachOther(t *testing.T) {
	namespace(t, "e2e-mesh")
	const n = 30
	for i := range n {
		createPod(t, "e2e-mesh", fmt.Sprintf("m%02d", i), fmt.Sprintf("node%d", i%3+1))
	}
	var pods []pod
	for i := range n {
		pods = append(pods, waitRunning(t, "e2e-mesh", fmt.Sprintf("m%02d", i)))
	}
	errs := parallel(n*n, 8, func(k int) error {
		from, to := pods[k/n], pods[k%n]
		r, err := probe(from, "tcp", to.IP+":80")
		if err != nil {
			return fmt.Errorf("%s (%s) cannot reach %s (%s on %s) over tcp: %v", from.key(), from.Node, to.key(), to.IP, to.Node, err)
		}
		if r.Name != to.key() {
			return fmt.Errorf("%s reached %s but %s answered", from.key(), to.IP, r.Name)
		}
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d TCP probes, %d failed", n*n, len(errs))
}

func TestNodeAgentRestartKeepsPodsConnected(t *testing.T) {
	namespace(t, "e2e-agent")
	createPod(t, "e2e-agent", "b", "node2")
	createPod(t, "e2e-agent", "a", "node1")
	b, a := waitRunning(t, "e2e-agent", "b"), waitRunning(t, "e2e-agent", "a")
	mustReach(t, a, b, "tcp")
	if _, err := sandbox.Restart(stateDir, "node2-kovn-node"); err != nil {
		t.Fatal(err)
	}
	// Existing pods keep talking while and after the agent restarts.
	for range 5 {
		mustReach(t, a, b, "tcp")
		mustReach(t, b, a, "udp")
		time.Sleep(200 * time.Millisecond)
	}
	// And the restarted agent serves new pods.
	createPod(t, "e2e-agent", "c", "node2")
	c := waitRunning(t, "e2e-agent", "c")
	mustReach(t, a, c, "tcp")
	mustReach(t, c, b, "tcp")
}

func TestControllerRestartChangesNothing(t *testing.T) {
	namespace(t, "e2e-ctrl")
	createPod(t, "e2e-ctrl", "x", "node1")
	createPod(t, "e2e-ctrl", "y", "node3")
	x, y := waitRunning(t, "e2e-ctrl", "x"), waitRunning(t, "e2e-ctrl", "y")
	nbDB := filepath.Join(stateDir, "ovn", "nb.db")
	time.Sleep(time.Second) // let the controller settle
	before := fileSize(t, nbDB)
	if _, err := sandbox.Restart(stateDir, "kovn-controller"); err != nil {
		t.Fatal(err)
	}
	// Wait for the new controller to finish its start-up sync: it logs it.
	eventually(t, "restarted controller's full sync", 60*time.Second, func() (bool, string) {
		data, _ := os.ReadFile(filepath.Join(stateDir, "logs", "kovn-controller.log"))
		return strings.Count(string(data), "full sync done") >= 2, "no second 'full sync done' yet"
	})
	time.Sleep(time.Second)
	if after := fileSize(t, nbDB); after != before {
		t.Errorf("the NB database changed from %d to %d bytes across a controller restart with nothing changed", before, after)
	}
	mustReach(t, x, y, "tcp")
	createPod(t, "e2e-ctrl", "z", "node2")
	z := waitRunning(t, "e2e-ctrl", "z")
	mustReach(t, z, x, "tcp")
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestMetricsAreServed(t *testing.T) {
	namespace(t, "e2e-metrics")
	createPod(t, "e2e-metrics", "m", "node1")
	waitRunning(t, "e2e-metrics", "m")
	for url, want := range map[string][]string{
		"http://127.0.0.1:9475/metrics": {`kovn_controller_nb_transactions_total{result="ok"}`, `kovn_controller_reconcile_duration_seconds_count{kind="pod",result="ok"}`},
		"http://127.0.0.1:9476/metrics": {`kovn_cni_request_duration_seconds_count{command="ADD",result="ok"}`, "kovn_cni_ovn_installed_wait_seconds_count",
			"kovn_node_host_nodeport_rules", "kovn_node_healthcheck_ports"},
	} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s lacks %s", url, w)
			}
		}
	}
}

func TestNodesReachTheExternalHost(t *testing.T) {
	for i, node := range state.Nodes {
		var r workload.Reply
		err := namedns.Do(node.Netns, func() error {
			var perr error
			r, perr = workload.Probe("tcp", sandbox.ExternalIP+":80", 3*time.Second)
			return perr
		})
		if err != nil {
			t.Fatalf("%s cannot reach the external host %s: %v", node.Name, sandbox.ExternalIP, err)
		}
		if r.Name != "external" || !strings.HasPrefix(r.Client, node.IP+":") {
			t.Errorf("node %d: external host answered %+v, want it to see %s", i+1, r, node.IP)
		}
	}
}
