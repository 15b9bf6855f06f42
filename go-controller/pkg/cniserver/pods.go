package cniserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
)

// podWatch keeps the pods of this node (an informer filtered by spec.nodeName: a watch, never a poll) and wakes
// ADDs waiting for a pod's network annotation.
type podWatch struct {
	factory informers.SharedInformerFactory
	inf     cache.SharedIndexInformer
	mu      sync.Mutex
	waiters map[string][]chan struct{} // by namespace/name
}

func newPodWatch(kube kubernetes.Interface, node string) *podWatch {
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	w := &podWatch{factory: f, inf: f.Core().V1().Pods().Informer(), waiters: map[string][]chan struct{}{}}
	_, _ = w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.wake,
		UpdateFunc: func(_, obj any) { w.wake(obj) },
	})
	return w
}

func (w *podWatch) start(ctx context.Context) error {
	w.factory.Start(ctx.Done())
	go func() { <-ctx.Done(); w.factory.Shutdown() }()
	return nil
}

func (w *podWatch) synced() bool { return w.inf.HasSynced() }

func (w *podWatch) wake(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := p.Namespace + "/" + p.Name
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.waiters[key] {
		close(ch)
	}
	delete(w.waiters, key)
}

// get returns the cached pod.
func (w *podWatch) get(ns, name string) *corev1.Pod {
	obj, ok, err := w.inf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.Pod)
}

// waitNetwork returns the pod's network annotation once the pod (with the given UID, when not empty) carries
// one, waking on each watch event for the pod; it gives up when ctx ends, saying what it saw.
func (w *podWatch) waitNetwork(ctx context.Context, ns, name, uid string) (annotations.PodNetwork, *corev1.Pod, error) {
	start := time.Now()
	key := ns + "/" + name
	for {
		ch := make(chan struct{})
		w.mu.Lock()
		w.waiters[key] = append(w.waiters[key], ch)
		w.mu.Unlock()

		pod := w.get(ns, name)
		done := func() { w.drop(key, ch) }
		state := "the pod is not (yet) in this node's pod cache"
		if pod != nil {
			if uid != "" && string(pod.UID) != uid {
				state = fmt.Sprintf("the cached pod has UID %s, not %s", pod.UID, uid)
			} else {
				net, ok, err := annotations.ParsePodNetwork(pod.Annotations)
				if err != nil {
					state = err.Error()
				} else if ok {
					done()
					return net, pod, nil
				} else {
					state = "the pod has no " + annotations.PodNetworks + " annotation yet (is kovn controller running?)"
				}
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			done()
			return annotations.PodNetwork{}, nil, fmt.Errorf("pod %s: no network after %s: %s", key, time.Since(start).Round(time.Millisecond), state)
		}
	}
}

// drop removes a waiter that no longer waits.
func (w *podWatch) drop(key string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.waiters[key]
	for i, c := range list {
		if c == ch {
			w.waiters[key] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(w.waiters[key]) == 0 {
		delete(w.waiters, key)
	}
}
