package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// networked reports whether a pod gets a port on the pod network: scheduled, not host-network, not finished.
func networked(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && !p.Spec.HostNetwork &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func podRef(p *corev1.Pod) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}

// errNodeNotReady asks for a retry: the pod's node has no subnet yet (its sync enqueues the pod again).
var errNodeNotReady = errors.New("node has no subnet yet")

// syncPod gives a networked pod its IP, annotation, logical switch port and address-set entry, or removes them
// once the pod is gone or finished.
func (c *Controller) syncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && !networked(pod)) {
		return c.teardownPod(ctx, ns, name)
	}
	if err != nil {
		return err
	}
	pool := c.pool(pod.Spec.NodeName)
	if pool == nil {
		return fmt.Errorf("pod %s on node %s: %w", key, pod.Spec.NodeName, errNodeNotReady)
	}
	net, err := c.podNetwork(ctx, pod, pool)
	if err != nil || net == nil {
		return err
	}
	ops, err := c.podOps(pod, *net)
	if err != nil {
		return fmt.Errorf("pod %s: %w", key, err)
	}
	if err := c.apply(ctx, "pod "+key, ops); err != nil {
		return err
	}
	c.enqueueNamedPortPolicies(pod)
	return nil
}

// podOps returns the operations that make a pod's port and address-set entry match net. A port left by an
// earlier pod of the same name on another node is replaced, and IPs the port no longer has leave the address set.
func (c *Controller) podOps(pod *corev1.Pod, net annotations.PodNetwork) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	key := pod.Namespace + "/" + pod.Name
	lsp := topology.ForPod(pod.Namespace, pod.Name, pod.Spec.NodeName, net)
	as := topology.ForNamespace(pod.Namespace, nil)
	old, err := nbops.Lookup(c.nb, &nbdb.LogicalSwitchPort{Name: lsp.Name})
	if err != nil {
		return nil, err
	}
	replace := old != nil && old.ExternalIDs[topology.KeyNode] != pod.Spec.NodeName
	if old != nil {
		var stale []string
		for _, ip := range lspIPs(old) {
			if !slices.Contains(ipStrings(net), ip) && !c.ipHeldByOther(ip, key) {
				stale = append(stale, ip)
			}
		}
		if err := add(nbops.EnsureNotInSet(c.nb, as, &as.Addresses, stale)); err != nil {
			return nil, err
		}
	}
	if replace {
		if err := add(nbops.Delete(c.nb, old)); err != nil {
			return nil, err
		}
		if err := add(nbops.Create(c.nb, lsp)); err != nil {
			return nil, err
		}
	} else if err := add(nbops.CreateOrUpdate(c.nb, lsp)); err != nil {
		return nil, err
	}
	sw := &nbdb.LogicalSwitch{Name: pod.Spec.NodeName}
	if err := add(nbops.EnsureInSet(c.nb, sw, &sw.Ports, []string{lsp.UUID})); err != nil {
		return nil, err
	}
	if err := add(nbops.CreateOrUpdate(c.nb, as, &as.ExternalIDs)); err != nil {
		return nil, err
	}
	if err := add(nbops.EnsureInSet(c.nb, as, &as.Addresses, ipStrings(net))); err != nil {
		return nil, err
	}
	if err := add(c.podEgressOps(pod, net)); err != nil {
		return nil, err
	}
	err = add(c.podPolicyOps(pod, lsp.UUID, net.IPs[0].Addr().String()))
	return ops, err
}

// ipHeldByOther reports whether IPAM has given ip to a pod other than key.
func (c *Controller) ipHeldByOther(ip, key string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	c.poolsMu.Lock()
	defer c.poolsMu.Unlock()
	for _, p := range c.pools {
		if owner, ok := p.Owner(addr); ok && owner != key {
			return true
		}
	}
	return false
}

// podNetwork returns the pod's network: the one its annotation records when valid and free, otherwise a new
// allocation (the requested static IP/MAC when valid and free), recorded in the annotation before use. A nil
// network with a nil error means the pod cannot be served until it changes; an Event says why.
func (c *Controller) podNetwork(ctx context.Context, pod *corev1.Pod, pool *ipam.Pool) (*annotations.PodNetwork, error) {
	key := pod.Namespace + "/" + pod.Name
	recorded, ok, err := annotations.ParsePodNetwork(pod.Annotations)
	switch {
	case err != nil:
		c.warn(podRef(pod), "InvalidNetworkAnnotation", fmt.Sprintf("replacing malformed network annotation: %v", err))
	case ok && !pool.Subnet().Contains(recorded.IPs[0].Addr()):
		c.warn(podRef(pod), "InvalidNetworkAnnotation", fmt.Sprintf("recorded IP %s is not in node %s's subnet %s; allocating another",
			recorded.IPs[0].Addr(), pod.Spec.NodeName, pool.Subnet()))
	case ok:
		if err := pool.Reserve(key, recorded.IPs[0].Addr()); err != nil {
			c.warn(podRef(pod), "IPConflict", fmt.Sprintf("recorded IP cannot be used: %v", err))
			return nil, nil
		}
		return &recorded, nil
	}

	req, err := annotations.ParseStaticRequest(pod.Annotations)
	if err != nil {
		c.warn(podRef(pod), "InvalidStaticAddress", err.Error())
		return nil, nil
	}
	var ip netip.Addr
	if req.IP.IsValid() {
		if err := pool.Reserve(key, req.IP); err != nil {
			c.warn(podRef(pod), "StaticIPRefused", fmt.Sprintf("requested IP refused: %v", err))
			if errors.Is(err, ipam.ErrInUse) {
				return nil, err // may be freed later: retry with backoff
			}
			return nil, nil
		}
		ip = req.IP
	} else if ip, err = pool.Allocate(key); err != nil {
		c.warn(podRef(pod), "SubnetExhausted", fmt.Sprintf("no IP left for the pod: %v", err))
		return nil, err
	}
	net := topology.PodNetwork(c.cfg.Cluster, pool.Subnet(), ip, req.MAC)
	value, err := annotations.MarshalPodNetwork(net)
	if err != nil {
		return nil, err
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotations.PodNetworks, value)
	c.ownWrites.Store(key, value)
	if _, err := c.kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		c.ownWrites.Delete(key)
		if apierrors.IsNotFound(err) {
			pool.Release(key)
			return nil, nil
		}
		// The patch may have landed (a timeout): keep the IP reserved for this pod; the retry writes the same one.
		return nil, fmt.Errorf("record network of pod %s: %w", key, err)
	}
	return &net, nil
}

// teardownPod removes a pod's port and address-set entry, then frees its IP.
func (c *Controller) teardownPod(ctx context.Context, ns, name string) error {
	key := ns + "/" + name
	lsp, err := nbops.Lookup(c.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(ns, name)})
	if err != nil {
		return err
	}
	ops, err := nbops.Delete(c.nb, podEgressNATLookup(ns, name))
	if err != nil {
		return err
	}
	if lsp != nil {
		del, err := nbops.Delete(c.nb, lsp)
		if err != nil {
			return err
		}
		ops = append(ops, del...)
		as := &nbdb.AddressSet{Name: topology.NamespaceAddressSet(ns)}
		rm, err := nbops.EnsureNotInSet(c.nb, as, &as.Addresses, lspIPs(lsp))
		if err != nil {
			return err
		}
		ops = append(ops, rm...)
		peerOps, err := c.podPeerRemovalOps(lspIPs(lsp))
		if err != nil {
			return err
		}
		ops = append(ops, peerOps...)
	}
	if err := c.apply(ctx, "remove pod "+key, ops); err != nil {
		return err
	}
	if lsp != nil {
		c.enqueueNamedPortPoliciesFor(ns) // a named-port match may list the pod's IP
	}
	c.releasePod(key)
	c.ownWrites.Delete(key)
	return nil
}

func (c *Controller) releasePod(key string) {
	c.poolsMu.Lock()
	defer c.poolsMu.Unlock()
	for _, p := range c.pools {
		p.Release(key)
	}
}

func ipStrings(n annotations.PodNetwork) []string {
	out := make([]string, len(n.IPs))
	for i, ip := range n.IPs {
		out[i] = ip.Addr().String()
	}
	return out
}

// lspIPs returns the IPs in a port's addresses ("MAC IP [IP...]").
func lspIPs(lsp *nbdb.LogicalSwitchPort) []string {
	var out []string
	for _, a := range lsp.Addresses {
		for _, f := range strings.Fields(a)[1:] {
			if ip, err := netip.ParseAddr(f); err == nil {
				out = append(out, ip.String())
			}
		}
	}
	return out
}
