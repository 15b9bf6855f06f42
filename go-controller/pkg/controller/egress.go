package controller

import (
	"fmt"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// namespaceEgressSNAT returns whether pods of the namespace leave the cluster SNATed: its annotation, or the
// cluster default when it has none or a malformed one (namespace sync reports those).
func (c *Controller) namespaceEgressSNAT(namespace string) bool {
	if ns, err := c.namespaces.Get(namespace); err == nil {
		if v, set, err := annotations.ParseEgressSNAT(ns.Annotations); err == nil && set {
			return v
		}
	}
	return c.cfg.Cluster.Gateway.EgressSNAT
}

// warnBadEgressAnnotation reports a namespace's malformed egress annotation.
func (c *Controller) warnBadEgressAnnotation(ns *corev1.Namespace) {
	if _, _, err := annotations.ParseEgressSNAT(ns.Annotations); err != nil {
		c.warn(&corev1.ObjectReference{Kind: "Namespace", Name: ns.Name, UID: ns.UID, APIVersion: "v1"}, "InvalidEgressAnnotation",
			fmt.Sprintf("%v; using the cluster default (egress SNAT %v)", err, c.cfg.Cluster.Gateway.EgressSNAT))
	}
}

// podEgressNATLookup identifies a pod's egress NAT row.
func podEgressNATLookup(namespace, name string) *nbdb.NAT {
	return &nbdb.NAT{ExternalIDs: ownership.NewOwner(ownership.KindPod, namespace, name).ID("egress-nat").ExternalIDs(nil)}
}

// podEgressOps returns the operations that give a pod the egress NAT row on its node's gateway router that its
// namespace's setting calls for (one only when it differs from the cluster default), or remove the one it has.
func (c *Controller) podEgressOps(pod *corev1.Pod, net annotations.PodNetwork) ([]ovsdb.Operation, error) {
	existing, err := nbops.Lookup(c.nb, podEgressNATLookup(pod.Namespace, pod.Name))
	if err != nil {
		return nil, err
	}
	want, err := c.desiredPodEgressNAT(pod, net)
	if err != nil {
		return nil, err
	}
	var ops []ovsdb.Operation
	if existing != nil && (want == nil || existing.ExternalIDs[topology.KeyNode] != want.ExternalIDs[topology.KeyNode]) {
		if ops, err = nbops.Delete(c.nb, existing); err != nil {
			return nil, err
		}
		existing = nil
	}
	if want == nil {
		return ops, nil
	}
	var o []ovsdb.Operation
	if existing == nil {
		o, err = nbops.Create(c.nb, want)
	} else {
		o, err = nbops.CreateOrUpdate(c.nb, want)
	}
	if err != nil {
		return nil, err
	}
	ops = append(ops, o...)
	gr := &nbdb.LogicalRouter{Name: topology.GatewayRouter(pod.Spec.NodeName)}
	o, err = nbops.EnsureInSet(c.nb, gr, &gr.Nat, []string{want.UUID})
	return append(ops, o...), err
}

// desiredPodEgressNAT returns the pod's egress NAT row, or nil when it needs none or its node has no gateway
// router yet (the node's sync enqueues its pods once it has one).
func (c *Controller) desiredPodEgressNAT(pod *corev1.Pod, net annotations.PodNetwork) (*nbdb.NAT, error) {
	node, err := c.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		return nil, nil
	}
	gw, ok, err := annotations.ParseNodeGateway(node.Annotations)
	if err != nil || !ok {
		return nil, nil
	}
	if gr, err := nbops.Lookup(c.nb, &nbdb.LogicalRouter{Name: topology.GatewayRouter(node.Name)}); err != nil || gr == nil {
		return nil, err
	}
	exempt, err := c.exemptSetUUID()
	if err != nil {
		return nil, err
	}
	n := topology.PodEgressNAT(c.cfg.Cluster, pod.Namespace, pod.Name, net.IPs[0].Addr(), gw.IP.Addr(),
		c.namespaceEgressSNAT(pod.Namespace), exempt)
	if n != nil {
		n.ExternalIDs[topology.KeyNode] = node.Name
	}
	return n, nil
}

// namespaceEgressChanged re-evaluates the egress NAT of a namespace's pods when its egress annotation changes:
// the change applies to running pods.
func (c *Controller) namespaceEgressChanged(o, n *corev1.Namespace) {
	if o.Annotations[annotations.EgressSNAT] == n.Annotations[annotations.EgressSNAT] {
		return
	}
	pods, err := c.pods.Pods(n.Name).List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range pods {
		c.podQ.Add(p.Namespace + "/" + p.Name)
	}
}
