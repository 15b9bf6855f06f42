package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/ovn-kubernetes/libovsdb/client"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/kubecp"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
)

// env is a real kube-apiserver + etcd and a real NB ovsdb-server for one test.
type env struct {
	t    testing.TB
	kube kubernetes.Interface
	nb   client.Client
	ovn  *ovntest.OVN
	cfg  config.Cluster
	// restConfig reaches the apiserver as admin.
	restConfig *rest.Config
}

func newEnv(t testing.TB, cfg config.Cluster) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real kube-apiserver; run `make test`")
	}
	if os.Getenv("KOVN_KUBE_BIN") == "" {
		t.Fatal("KOVN_KUBE_BIN is not set: run the tests with `make test`, which builds the kube binaries and sets it")
	}
	dir, err := os.MkdirTemp("", "kovn-kube-")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := kubecp.Start(context.Background(), kubecp.Options{Dir: dir, DieWithParent: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cp.Stop()
		os.RemoveAll(dir)
	})
	kube, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	o := ovntest.StartNB(t)
	return &env{t: t, kube: kube, nb: o.NB, ovn: o, cfg: cfg, restConfig: cp.RESTConfig()}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startController runs a controller until the returned stop is called (or the test ends).
func (e *env) startController() (*Controller, func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.kube.CoreV1().Events("")})
	c, err := New(Config{
		Cluster: e.cfg, NB: e.nb, Kube: e.kube, Logger: testLogger(e.t),
		Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kovn-controller"}),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("controller: %v", err)
		}
		broadcaster.Shutdown()
	}
	e.t.Cleanup(stop)
	return c, stop
}

// eventually polls cond every 20 ms for up to 20 s; on timeout it fails with what cond last said.
func (e *env) eventually(what string, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

func (e *env) waitIdle(c *Controller) {
	e.t.Helper()
	e.eventually("controller idle", func() (bool, string) {
		return c.Idle(), fmt.Sprintf("synced=%v inflight=%d", c.synced.Load(), c.inflight.Load())
	})
}

func (e *env) createNamespace(name string) {
	e.t.Helper()
	ctx := context.Background()
	_, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	// kube-controller-manager would create it; pods are refused without it.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "default"}}
	if _, err := e.kube.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// deleteNamespace deletes a namespace and finalizes it, which kube-controller-manager would do.
func (e *env) deleteNamespace(name string) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	ns, err := e.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	ns.Spec.Finalizers = nil
	if _, err := e.kube.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) createNode(name string, annotations map[string]string) {
	e.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	if _, err := e.kube.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deleteNode(name string) {
	e.t.Helper()
	if err := e.kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

type podOpt func(*corev1.Pod)

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }
func withAnnotations(a map[string]string) podOpt {
	return func(p *corev1.Pod) { p.Annotations = a }
}

func (e *env) createPod(ns, name, node string, opts ...podOpt) {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			Containers:                   []corev1.Container{{Name: "c", Image: "kovn.io/test"}},
			AutomountServiceAccountToken: new(bool),
		},
	}
	for _, o := range opts {
		o(p)
	}
	if _, err := e.kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deletePod(ns, name string) {
	e.t.Helper()
	if err := e.kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setPodPhase(ns, name string, phase corev1.PodPhase) {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Status.Phase = phase
	if _, err := e.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) pod(ns, name string) *corev1.Pod {
	e.t.Helper()
	p, err := e.kube.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitEvent waits for a Warning Event with reason on the named object.
func (e *env) waitEvent(ns, name, reason string) string {
	e.t.Helper()
	var msg string
	e.eventually(fmt.Sprintf("event %s on %s/%s", reason, ns, name), func() (bool, string) {
		list, err := e.kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
		})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.Reason == reason && ev.Type == corev1.EventTypeWarning {
				msg = ev.Message
				return true, ""
			}
			seen = append(seen, ev.Reason)
		}
		return false, fmt.Sprintf("events seen: %v", seen)
	})
	return msg
}
