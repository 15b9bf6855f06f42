package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// isolationPolicy is the name of the policy kovn synthesizes for a namespace annotated kovn.io/isolation=true
// (a name no NetworkPolicy can have): its pods accept traffic only from their own namespace.
const isolationPolicy = ":isolation"

// policy returns the NetworkPolicy (or the synthesized isolation policy) of a key; nil when there is none.
func (c *Controller) policy(ns, name string) (*networkingv1.NetworkPolicy, error) {
	if name == isolationPolicy {
		n, err := c.namespaces.Get(ns)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if on, _, _ := annotations.ParseIsolation(n.Annotations); !on {
			return nil, nil
		}
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: isolationPolicy},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}}}, nil
	}
	np, err := c.policies.NetworkPolicies(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return np, err
}

// policiesIn lists the namespace's policies, the synthesized isolation policy included.
func (c *Controller) policiesIn(ns string) ([]*networkingv1.NetworkPolicy, error) {
	list, err := c.policies.NetworkPolicies(ns).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	if iso, err := c.policy(ns, isolationPolicy); err == nil && iso != nil {
		list = append(list, iso)
	}
	return list, nil
}

// syncPolicy makes a policy's port group (members and ACLs), its peers' address sets and its namespace's
// default-deny port groups match the policy, in one transaction; or removes them with the policy.
func (c *Controller) syncPolicy(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	np, err := c.policy(ns, name)
	if err != nil {
		return err
	}
	var ops []ovsdb.Operation
	var peers []policy.Peer
	if np == nil {
		if ops, err = nbops.Delete(c.nb, &nbdb.PortGroup{Name: policy.PortGroupName(ns, name)}); err != nil {
			return err
		}
	} else {
		t := policy.Translate(np, c.namedPorts(np))
		for _, w := range t.Warnings {
			c.warn(&corev1.ObjectReference{Kind: "NetworkPolicy", APIVersion: "networking.k8s.io/v1", Namespace: ns, Name: name, UID: np.UID},
				"PolicyNotFullyHonoured", w)
		}
		if ops, err = c.policyOps(np, t); err != nil {
			return fmt.Errorf("policy %s: %w", key, err)
		}
		peers = t.Peers
	}
	peerOps, err := c.peers.use(c, key, peers)
	if err != nil {
		return fmt.Errorf("policy %s peers: %w", key, err)
	}
	ops = append(ops, peerOps...)
	deny, err := c.denyOps(ns)
	if err != nil {
		return fmt.Errorf("policy %s: %w", key, err)
	}
	ops = append(ops, deny...)
	if err := c.apply(ctx, "policy "+key, ops); err != nil {
		return err // the registry changes only on commit
	}
	// Pod syncs read the groups and sets from the cache: wait until it has them, then register the peers and
	// resync the selected pods that had no port yet (their own sync may have run before the group existed).
	c.waitCached(ctx, np, peers)
	newPeers := c.peers.newFor(key, peers)
	c.peers.commit(key, peers)
	// A new peer set was filled from the informers, which may lag the pods' own syncs: recompute it once more.
	for _, k := range newPeers {
		c.peerQ.AddAfter(k, 200*time.Millisecond)
	}
	if np != nil {
		c.enqueuePortless(np)
	}
	return nil
}

// waitCached waits (briefly) until the NB cache holds the policy's port group and its peers' address sets.
func (c *Controller) waitCached(ctx context.Context, np *networkingv1.NetworkPolicy, peers []policy.Peer) {
	if np == nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		missing := false
		if pg, _ := nbops.Lookup(c.nb, &nbdb.PortGroup{Name: policy.PortGroupName(np.Namespace, np.Name)}); pg == nil {
			missing = true
		}
		for _, p := range peers {
			if as, _ := nbops.Lookup(c.nb, &nbdb.AddressSet{Name: p.AddressSetName()}); as == nil {
				missing = true
			}
		}
		if !missing {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// enqueuePortless resyncs the pods a policy selects whose port is not in its port group (or its namespace's
// deny groups) in the cache: a pod whose sync ran before the group existed, while the policy's sync ran before
// the pod's port existed, would otherwise stay out.
func (c *Controller) enqueuePortless(np *networkingv1.NetworkPolicy) {
	pods, err := c.pods.Pods(np.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	groups := []string{policy.PortGroupName(np.Namespace, np.Name)}
	in, eg := policy.Types(np)
	if in {
		groups = append(groups, policy.DenyPortGroupName(np.Namespace, policy.Ingress))
	}
	if eg {
		groups = append(groups, policy.DenyPortGroupName(np.Namespace, policy.Egress))
	}
	var members [][]string
	for _, g := range groups {
		pg, _ := nbops.Lookup(c.nb, &nbdb.PortGroup{Name: g})
		if pg == nil {
			members = append(members, nil)
			continue
		}
		members = append(members, pg.Ports)
	}
	for _, p := range pods {
		if !networked(p) || !policy.Selects(np, p.Namespace, p.Labels) {
			continue
		}
		lsp, _ := nbops.Lookup(c.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(p.Namespace, p.Name)})
		if lsp == nil || slices.ContainsFunc(members, func(m []string) bool { return !slices.Contains(m, lsp.UUID) }) {
			c.podQ.Add(p.Namespace + "/" + p.Name)
		}
	}
}

// enqueueNamedPortPolicies resyncs the policies whose named ports a pod with named container ports may resolve
// to (their matches list the pods' IPs per port number).
func (c *Controller) enqueueNamedPortPolicies(pod *corev1.Pod) {
	named := false
	for _, ct := range pod.Spec.Containers {
		for _, p := range ct.Ports {
			named = named || p.Name != ""
		}
	}
	if named {
		c.enqueueNamedPortPoliciesFor(pod.Namespace)
	}
}

// enqueueNamedPortPoliciesFor resyncs the policies with named ports a pod of namespace ns may resolve to.
func (c *Controller) enqueueNamedPortPoliciesFor(ns string) {
	nps, err := c.policies.List(labels.Everything())
	if err != nil {
		return
	}
	for _, np := range nps {
		if hasNamedPorts(np, ns) {
			c.npQ.Add(np.Namespace + "/" + np.Name)
		}
	}
}

// hasNamedPorts reports whether a policy has named ports that a pod of namespace ns can resolve: ingress rules
// of its own namespace, egress rules of any.
func hasNamedPorts(np *networkingv1.NetworkPolicy, ns string) bool {
	named := func(ports []networkingv1.NetworkPolicyPort) bool {
		return slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.Type == intstr.String })
	}
	if np.Namespace == ns {
		for _, r := range np.Spec.Ingress {
			if named(r.Ports) {
				return true
			}
		}
	}
	for _, r := range np.Spec.Egress {
		if named(r.Ports) {
			return true
		}
	}
	return false
}

// policyOps makes the policy's port group hold exactly the selected pods' ports and exactly its ACLs.
func (c *Controller) policyOps(np *networkingv1.NetworkPolicy, t policy.Translation) ([]ovsdb.Operation, error) {
	owner := ownership.NewOwner(ownership.KindNetworkPolicy, np.Namespace, np.Name)
	ports, err := c.selectedPorts(np.Namespace, func(p *corev1.Pod) bool { return policy.Selects(np, p.Namespace, p.Labels) })
	if err != nil {
		return nil, err
	}
	logAllow, _ := c.aclLogging(np.Namespace)
	var acls []*nbdb.ACL
	for _, a := range t.ACLs {
		acls = append(acls, aclRow(owner.ID(a.ID), a, logAllow))
	}
	pg := &nbdb.PortGroup{Name: t.PortGroup, ExternalIDs: owner.ID("port-group").ExternalIDs(nil)}
	return c.portGroupOps(pg, ports, acls)
}

// portGroupOps creates or updates a port group with exactly the given ports (by mutation of the difference)
// and ACLs (created or updated by identity; ACLs it no longer has are deleted).
func (c *Controller) portGroupOps(pg *nbdb.PortGroup, ports []string, acls []*nbdb.ACL) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	existing, err := nbops.Lookup(c.nb, &nbdb.PortGroup{Name: pg.Name})
	if err != nil {
		return nil, err
	}
	if err := add(nbops.CreateOrUpdate(c.nb, pg, &pg.ExternalIDs)); err != nil {
		return nil, err
	}
	var want []string
	for _, a := range acls {
		if err := add(nbops.CreateOrUpdate(c.nb, a)); err != nil {
			return nil, err
		}
		want = append(want, a.UUID)
	}
	if err := add(nbops.EnsureInSet(c.nb, pg, &pg.ACLs, want)); err != nil {
		return nil, err
	}
	if err := add(nbops.EnsureInSet(c.nb, pg, &pg.Ports, ports)); err != nil {
		return nil, err
	}
	if existing == nil {
		return ops, nil
	}
	var extraPorts []string
	for _, p := range existing.Ports {
		if !slices.Contains(ports, p) {
			extraPorts = append(extraPorts, p)
		}
	}
	if err := add(nbops.EnsureNotInSet(c.nb, pg, &pg.Ports, extraPorts)); err != nil {
		return nil, err
	}
	for _, u := range existing.ACLs {
		if !slices.Contains(want, u) {
			if err := add(nbops.Delete(c.nb, &nbdb.ACL{UUID: u})); err != nil {
				return nil, err
			}
		}
	}
	return ops, nil
}

// aclRow builds an ACL row, with logging when the namespace asks for it (severity "" means no logging).
func aclRow(id ownership.ID, a policy.ACL, severity string) *nbdb.ACL {
	name := a.Name
	row := &nbdb.ACL{Name: &name, Direction: a.Direction, Priority: a.Priority, Match: a.Match, Action: a.Action,
		Options: a.Options, ExternalIDs: id.ExternalIDs(nil)}
	if severity != "" {
		meter := topology.ACLLogMeter
		row.Log, row.Severity, row.Meter = true, &severity, &meter
	}
	return row
}

// aclLogging returns the severities the namespace logs allowed and denied traffic at ("" = off).
func (c *Controller) aclLogging(ns string) (allow, deny string) {
	n, err := c.namespaces.Get(ns)
	if err != nil {
		return "", ""
	}
	l, _, err := annotations.ParseACLLogging(n.Annotations)
	if err != nil {
		return "", ""
	}
	return l.Allow, l.Deny
}

// selectedPorts returns the names... UUIDs of the logical switch ports of the namespace's networked pods that
// sel selects (pods without a port yet are skipped: their own sync adds them).
func (c *Controller) selectedPorts(ns string, sel func(*corev1.Pod) bool) ([]string, error) {
	pods, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods {
		if !networked(p) || !sel(p) {
			continue
		}
		if lsp, _ := nbops.Lookup(c.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(p.Namespace, p.Name)}); lsp != nil {
			out = append(out, lsp.UUID)
		}
	}
	slices.Sort(out)
	return out, nil
}

// denyOps makes the namespace's default-deny port groups hold exactly the pods some policy isolates in that
// direction (deleted when none is).
func (c *Controller) denyOps(ns string) ([]ovsdb.Operation, error) {
	nps, err := c.policiesIn(ns)
	if err != nil {
		return nil, err
	}
	_, logDeny := c.aclLogging(ns)
	var ops []ovsdb.Operation
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		var isolating []*networkingv1.NetworkPolicy
		for _, np := range nps {
			if in, eg := policy.Types(np); (d == policy.Ingress && in) || (d == policy.Egress && eg) {
				isolating = append(isolating, np)
			}
		}
		name := policy.DenyPortGroupName(ns, d)
		if len(isolating) == 0 {
			o, err := nbops.Delete(c.nb, &nbdb.PortGroup{Name: name})
			if err != nil {
				return nil, err
			}
			ops = append(ops, o...)
			continue
		}
		ports, err := c.selectedPorts(ns, func(p *corev1.Pod) bool {
			return slices.ContainsFunc(isolating, func(np *networkingv1.NetworkPolicy) bool { return policy.Selects(np, p.Namespace, p.Labels) })
		})
		if err != nil {
			return nil, err
		}
		owner := ownership.NewOwner(ownership.KindNamespace, "", ns)
		var acls []*nbdb.ACL
		for _, a := range policy.DenyACLs(ns, d) {
			acls = append(acls, aclRow(owner.ID(string(d)+"-"+a.ID), a, logDeny))
		}
		pg := &nbdb.PortGroup{Name: name, ExternalIDs: owner.ID(string(d) + "-deny-port-group").ExternalIDs(nil)}
		o, err := c.portGroupOps(pg, ports, acls)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}

// namedPorts resolves a policy's named ports against the pods concerned.
func (c *Controller) namedPorts(np *networkingv1.NetworkPolicy) policy.NamedPorts {
	return func(d policy.Direction, rule int, name, proto string) map[int32][]string {
		out := map[int32][]string{}
		var match func(*corev1.Pod) bool
		if d == policy.Ingress {
			match = func(p *corev1.Pod) bool { return policy.Selects(np, p.Namespace, p.Labels) }
		} else {
			var peers []policy.Matcher
			for _, pe := range policy.PeersOf(np.Namespace, np.Spec.Egress[rule].To) {
				peers = append(peers, pe.Matcher())
			}
			match = func(p *corev1.Pod) bool {
				nsLabels := c.namespaceLabels(p.Namespace)
				return len(np.Spec.Egress[rule].To) == 0 ||
					slices.ContainsFunc(peers, func(pe policy.Matcher) bool { return pe.MatchesPod(p.Namespace, nsLabels, p.Labels) })
			}
		}
		pods, _ := c.pods.List(labels.Everything())
		for _, p := range pods {
			ip, ok := c.podIP(p)
			if !ok || !match(p) {
				continue
			}
			for _, ct := range p.Spec.Containers {
				for _, cp := range ct.Ports {
					if cp.Name == name && strings.EqualFold(string(cp.Protocol), proto) || cp.Name == name && cp.Protocol == "" && proto == "tcp" {
						out[cp.ContainerPort] = append(out[cp.ContainerPort], ip)
					}
				}
			}
		}
		return out
	}
}

func (c *Controller) namespaceLabels(ns string) map[string]string {
	if n, err := c.namespaces.Get(ns); err == nil {
		return n.Labels
	}
	return nil
}

// podIP returns the IP kovn gave a networked pod: from its annotation, or from its port in NB when the
// informer has not delivered the annotation yet.
func (c *Controller) podIP(p *corev1.Pod) (string, bool) {
	if !networked(p) {
		return "", false
	}
	if n, ok, err := annotations.ParsePodNetwork(p.Annotations); err == nil && ok {
		return n.IPs[0].Addr().String(), true
	}
	if lsp, _ := nbops.Lookup(c.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(p.Namespace, p.Name)}); lsp != nil {
		if ips := lspIPs(lsp); len(ips) > 0 {
			return ips[0], true
		}
	}
	return "", false
}

// namespaceAdded, namespaceDeleted and namespaceChanged react to what a namespace's metadata means for
// networking.
func (c *Controller) namespaceAdded(obj any) {
	if n, ok := obj.(*corev1.Namespace); ok && n.Annotations[annotations.Isolation] != "" {
		c.npQ.Add(n.Name + "/" + isolationPolicy)
	}
}

func (c *Controller) namespaceDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if n, ok := obj.(*corev1.Namespace); ok {
		c.npQ.Add(n.Name + "/" + isolationPolicy) // removes the isolation rows and the deny groups
	}
}

func (c *Controller) namespaceChanged(old, cur any) {
	o, ok1 := old.(*corev1.Namespace)
	n, ok2 := cur.(*corev1.Namespace)
	if !ok1 || !ok2 {
		return
	}
	c.namespaceEgressChanged(o, n)
	if o.Annotations[annotations.Isolation] != n.Annotations[annotations.Isolation] {
		c.npQ.Add(n.Name + "/" + isolationPolicy)
	}
	if o.Annotations[annotations.ACLLogging] != n.Annotations[annotations.ACLLogging] {
		if nps, err := c.policiesIn(n.Name); err == nil {
			for _, np := range nps {
				c.npQ.Add(np.Namespace + "/" + np.Name)
			}
		}
		c.warnBadACLLogging(n)
	}
	if !maps.Equal(o.Labels, n.Labels) {
		for _, k := range c.peers.withNamespaceSelector() {
			c.peerQ.Add(k)
		}
	}
}

// warnBadACLLogging reports a namespace's malformed ACL logging annotation.
func (c *Controller) warnBadACLLogging(n *corev1.Namespace) {
	if _, _, err := annotations.ParseACLLogging(n.Annotations); err != nil {
		c.warn(&corev1.ObjectReference{Kind: "Namespace", Name: n.Name, UID: n.UID, APIVersion: "v1"}, "InvalidACLLogging", err.Error())
	}
}
