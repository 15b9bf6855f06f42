package kubelet

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

func typesUID(s string) types.UID { return types.UID(s) }

// registerNode creates the Node object (or takes over an existing one).
func (k *Kubelet) registerNode(ctx context.Context) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: map[string]string{
		"kubernetes.io/hostname": k.cfg.NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}}
	_, err := k.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = k.updateStatus(ctx)
	return err
}

// updateStatus reports addresses, capacity and Ready: true only while the CNI plugin answers STATUS, as a real
// kubelet reports NetworkReady.
func (k *Kubelet) updateStatus(ctx context.Context) (ready bool, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var e error
		ready, e = k.tryUpdateStatus(ctx)
		return e
	})
	return ready, err
}

func (k *Kubelet) tryUpdateStatus(ctx context.Context) (bool, error) {
	n, err := k.kube.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	ready, reason, msg := corev1.ConditionTrue, "KubeletReady", "kubelet stand-in is posting ready status"
	list, err := k.confList()
	if err == nil {
		err = k.cni.GetStatusNetworkList(ctx, list)
	}
	if err != nil {
		ready, reason, msg = corev1.ConditionFalse, "NetworkPluginNotReady", "network plugin not ready: "+err.Error()
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	old := findCondition(n.Status.Conditions, corev1.NodeReady)
	transition := now
	if old != nil && old.Status == ready {
		transition = old.LastTransitionTime
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP}, {Type: corev1.NodeHostName, Address: k.cfg.NodeName}}
	n.Status.Capacity, n.Status.Allocatable = capacity, capacity
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: reason, Message: msg,
		LastHeartbeatTime: now, LastTransitionTime: transition}}
	n.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "kovn-sandbox", OperatingSystem: "linux", Architecture: "amd64",
		ContainerRuntimeVersion: "kovn-sandbox://netns"}
	n, err = k.kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		return false, err
	}
	// The not-ready taint the apiserver puts on new nodes is lifted by the node lifecycle controller, which the
	// sandbox does not run: the kubelet stand-in does it, as the node's network becomes ready.
	var taints []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady || ready != corev1.ConditionTrue {
			taints = append(taints, t)
		}
	}
	if len(taints) != len(n.Spec.Taints) {
		n.Spec.Taints = taints
		if _, err := k.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return false, err
		}
	}
	return ready == corev1.ConditionTrue, nil
}

func findCondition(cs []corev1.NodeCondition, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// heartbeat refreshes the node status: every second until Ready, then every 10 seconds.
func (k *Kubelet) heartbeat(ctx context.Context) {
	for {
		wait := 10 * time.Second
		ready, err := k.updateStatus(ctx)
		if err != nil {
			k.log.Warn("node status update failed", "err", err)
		}
		if !ready || err != nil {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// checkLoop runs CNI CHECK on every running pod every 30 seconds and reports failures as Events in the log.
func (k *Kubelet) checkLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
		list, err := k.confList()
		if err != nil {
			continue
		}
		k.mu.Lock()
		pods := make(map[string]running, len(k.pods))
		for key, r := range k.pods {
			pods[key] = *r
		}
		k.mu.Unlock()
		for key, r := range pods {
			obj, ok, _ := k.inf.GetStore().GetByKey(key)
			if !ok {
				continue
			}
			if err := k.cni.CheckNetworkList(ctx, list, k.runtimeConf(obj.(*corev1.Pod), &r)); err != nil {
				k.log.Warn("CNI CHECK failed", "pod", key, "err", err)
			}
		}
	}
}
