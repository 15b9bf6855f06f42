package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/workload"
)

// pod is a running sandbox pod.
type pod struct {
	Namespace, Name, Node, IP string
}

func (p pod) key() string { return p.Namespace + "/" + p.Name }

// namespace creates a test namespace (deleted at the end of the test) and waits for its default ServiceAccount.
func namespace(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Each test leaves the cluster as it found it: the namespace and its pods are gone before the next test.
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		eventually(t, "namespace "+name+" deleted", 90*time.Second, func() (bool, string) {
			_, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})
	eventually(t, "default ServiceAccount in "+name, 30*time.Second, func() (bool, string) {
		_, err := kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// createPod creates a pod serving TCP 80 and UDP 81 (on node when given, else where the scheduler puts it).
func createPod(t *testing.T, ns, name, node string) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "e2e"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test", Ports: []corev1.ContainerPort{
			{ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 81, Protocol: corev1.ProtocolUDP}}}}}}
	if node != "" {
		p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	if _, err := kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRunning waits for a pod to be Running with an IP, as the kubelet stand-in reports it.
func waitRunning(t *testing.T, ns, name string) pod {
	t.Helper()
	var out pod
	eventually(t, "pod "+ns+"/"+name+" running", 60*time.Second, func() (bool, string) {
		p, err := kube.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		out = pod{Namespace: ns, Name: name, Node: p.Spec.NodeName, IP: p.Status.PodIP}
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", fmt.Sprintf("phase %s ip %q node %q", p.Status.Phase, p.Status.PodIP, p.Spec.NodeName)
	})
	return out
}

func deletePod(t *testing.T, p pod) {
	t.Helper()
	ctx := context.Background()
	if err := kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod "+p.key()+" gone", 60*time.Second, func() (bool, string) {
		_, err := kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// probe asks, from inside the pod's network namespace, for an answer from addr over proto.
func probe(from pod, proto, addr string) (workload.Reply, error) {
	return probeFrom(from.key(), proto, addr)
}

// mustReach fails the test unless from reaches to over proto and the answer comes from to.
func mustReach(t *testing.T, from, to pod, proto string) workload.Reply {
	t.Helper()
	port := map[string]string{"tcp": "80", "udp": "81"}[proto]
	r, err := probe(from, proto, to.IP+":"+port)
	if err != nil {
		t.Fatalf("%s (%s on %s) cannot reach %s (%s on %s) over %s: %v", from.key(), from.IP, from.Node, to.key(), to.IP, to.Node, proto, err)
	}
	if r.Name != to.key() {
		t.Fatalf("%s reached %s:%s over %s but %s answered", from.key(), to.IP, port, proto, r.Name)
	}
	return r
}

// ping pings ip from a namespace (a pod's or a node's) and succeeds on the first reply. It sends up to five
// echoes 200 ms apart: a pod that just turned Ready may take a moment longer to be programmed on other nodes'
// ovn-controllers (ovn-installed covers only its own node), as TCP would ride out with a SYN retransmit.
func ping(netnsName, ip string) error {
	out, err := exec.Command("ip", "netns", "exec", netnsName, "ping", "-c", "5", "-i", "0.2", "-W", "2", "-q", ip).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func podNetnsName(t *testing.T, p pod) string {
	t.Helper()
	netns, err := sandbox.PodNetns(stateDir, p.key())
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(netns)
}

func nodeNetns(node string) string { return "kovnsb-" + node }

func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
}

// parallel runs f for 0..n-1 with up to w at a time and returns the errors.
func parallel(n, w int, f func(int) error) []error {
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, w)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}
