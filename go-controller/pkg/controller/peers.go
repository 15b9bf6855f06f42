package controller

import (
	"context"
	"slices"
	"sync"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// peerRegistry knows every peer selector some policy uses and which policies use it: a peer's address set
// exists while at least one policy references it. Policy syncs run one at a time, so a peer is never
// released by one policy while another starts to use it.
type peerRegistry struct {
	mu       sync.Mutex
	defs     map[string]policy.Peer
	refs     map[string]map[string]bool // peer key -> policy keys
	byPolicy map[string][]string        // policy key -> peer keys
	matchers map[string]policy.Matcher  // peer key -> parsed peer (snapshot's cache)
}

func newPeerRegistry() *peerRegistry {
	return &peerRegistry{defs: map[string]policy.Peer{}, refs: map[string]map[string]bool{}, byPolicy: map[string][]string{}}
}

// peerAddressSet is the row of a peer's address set.
func peerAddressSet(p policy.Peer, ips []string) *nbdb.AddressSet {
	return &nbdb.AddressSet{Name: p.AddressSetName(), Addresses: ips,
		ExternalIDs: ownership.NewOwner(ownership.KindPolicyPeer, "", p.Key()).ID("pod-ips").ExternalIDs(nil)}
}

// use returns the operations that create the address sets of peers the policy starts to use and delete those
// of peers only it used and no longer does. The registry changes on commit.
func (r *peerRegistry) use(c *Controller, policyKey string, peers []policy.Peer) ([]ovsdb.Operation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []ovsdb.Operation
	keys := map[string]bool{}
	for _, p := range peers {
		keys[p.Key()] = true
		if existing, _ := nbops.Lookup(c.nb, &nbdb.AddressSet{Name: p.AddressSetName()}); existing != nil && len(r.refs[p.Key()]) > 0 {
			continue
		}
		as := peerAddressSet(p, c.peerMembers(p))
		o, err := nbops.CreateOrUpdate(c.nb, as)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	for _, k := range r.byPolicy[policyKey] {
		if keys[k] {
			continue
		}
		if refs := r.refs[k]; len(refs) == 1 && refs[policyKey] {
			o, err := nbops.Delete(c.nb, &nbdb.AddressSet{Name: r.defs[k].AddressSetName()})
			if err != nil {
				return nil, err
			}
			ops = append(ops, o...)
		}
	}
	return ops, nil
}

// newFor returns the keys of peers the policy starts to use.
func (r *peerRegistry) newFor(policyKey string, peers []policy.Peer) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range peers {
		if !slices.Contains(r.byPolicy[policyKey], p.Key()) {
			out = append(out, p.Key())
		}
	}
	return out
}

// commit records that the policy now uses exactly peers.
func (r *peerRegistry) commit(policyKey string, peers []policy.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.byPolicy[policyKey] {
		delete(r.refs[k], policyKey)
		if len(r.refs[k]) == 0 {
			delete(r.refs, k)
			delete(r.defs, k)
		}
	}
	var keys []string
	for _, p := range peers {
		k := p.Key()
		keys = append(keys, k)
		r.defs[k] = p
		if r.refs[k] == nil {
			r.refs[k] = map[string]bool{}
		}
		r.refs[k][policyKey] = true
	}
	if len(keys) == 0 {
		delete(r.byPolicy, policyKey)
	} else {
		r.byPolicy[policyKey] = keys
	}
}

// snapshot returns the registered peers, with their selectors parsed (once per peer, not per pod).
func (r *peerRegistry) snapshot() []policy.Matcher {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.matchers == nil || len(r.matchers) > len(r.defs) {
		r.matchers = map[string]policy.Matcher{}
	}
	out := make([]policy.Matcher, 0, len(r.defs))
	for k, p := range r.defs {
		m, ok := r.matchers[k] // peers with one key match the same pods (the key is canonical)
		if !ok {
			m = p.Matcher()
			r.matchers[k] = m
		}
		out = append(out, m)
	}
	return out
}

func (r *peerRegistry) get(key string) (policy.Peer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.defs[key]
	return p, ok
}

func (r *peerRegistry) used(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.refs[key]) > 0
}

func (r *peerRegistry) withNamespaceSelector() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, p := range r.defs {
		if p.NamespaceSelector != nil {
			out = append(out, k)
		}
	}
	return out
}

// rebuild registers the peers of every existing policy (at start, before stale rows are removed).
func (r *peerRegistry) rebuild(c *Controller) error {
	nss, err := c.namespaces.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, ns := range nss {
		nps, err := c.policiesIn(ns.Name)
		if err != nil {
			return err
		}
		for _, np := range nps {
			r.commit(np.Namespace+"/"+np.Name, policy.AllPeers(np))
		}
	}
	return nil
}

// peerMembers returns the IPs of the pods a peer matches.
func (c *Controller) peerMembers(p policy.Peer) []string {
	var pods []*corev1.Pod
	if p.NamespaceSelector == nil {
		pods, _ = c.pods.Pods(p.Namespace).List(labels.Everything())
	} else {
		pods, _ = c.pods.List(labels.Everything())
	}
	m := p.Matcher()
	nsLabels := map[string]map[string]string{}
	var out []string
	for _, pod := range pods {
		ip, ok := c.podIP(pod)
		if !ok {
			continue
		}
		l, seen := nsLabels[pod.Namespace]
		if !seen {
			l = c.namespaceLabels(pod.Namespace)
			nsLabels[pod.Namespace] = l
		}
		if m.MatchesPod(pod.Namespace, l, pod.Labels) {
			out = append(out, ip)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// syncPeer sets a peer's address set to exactly the IPs of the pods it matches (after namespace label changes).
func (c *Controller) syncPeer(ctx context.Context, key string) error {
	p, ok := c.peers.get(key)
	if !ok {
		return nil
	}
	as := &nbdb.AddressSet{Name: p.AddressSetName()}
	existing, err := nbops.Lookup(c.nb, as)
	if err != nil || existing == nil {
		return err
	}
	want := c.peerMembers(p)
	var extra []string
	for _, a := range existing.Addresses {
		if _, found := slices.BinarySearch(want, a); !found {
			extra = append(extra, a)
		}
	}
	ops, err := nbops.EnsureInSet(c.nb, as, &as.Addresses, want)
	if err != nil {
		return err
	}
	rm, err := nbops.RemoveFromSet(c.nb, as, &as.Addresses, extra)
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		ops = append(ops, rm...)
	}
	return c.apply(ctx, "peer "+p.AddressSetName(), ops)
}

// podPolicyOps returns the operations that put a pod's port into exactly the port groups of the policies that
// select it (and its namespace's default-deny groups), and its IP into exactly the peer address sets that match
// it, in the same transaction that creates or updates its port: a pod is never reachable before its policies
// apply. lspUUID may be a named UUID of the same transaction.
func (c *Controller) podPolicyOps(pod *corev1.Pod, lspUUID, ip string) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	nps, err := c.policiesIn(pod.Namespace)
	if err != nil {
		return nil, err
	}
	groups := cachedByName(c, nbdb.PortGroupTable, func(pg *nbdb.PortGroup) string { return pg.Name })
	inDeny := map[policy.Direction]bool{}
	for _, np := range nps {
		sel := policy.Selects(np, pod.Namespace, pod.Labels)
		in, eg := policy.Types(np)
		inDeny[policy.Ingress] = inDeny[policy.Ingress] || (sel && in)
		inDeny[policy.Egress] = inDeny[policy.Egress] || (sel && eg)
		if err := add(c.memberOps(groups, policy.PortGroupName(np.Namespace, np.Name), lspUUID, sel)); err != nil {
			return nil, err
		}
	}
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		if err := add(c.memberOps(groups, policy.DenyPortGroupName(pod.Namespace, d), lspUUID, inDeny[d])); err != nil {
			return nil, err
		}
	}
	peers := c.peers.snapshot()
	if len(peers) == 0 {
		return ops, nil
	}
	nsLabels := c.namespaceLabels(pod.Namespace)
	sets := c.addressSetsByName()
	for _, p := range peers {
		// Most peers neither hold nor want the pod: the cached row says so without copying it.
		held := false
		if row := sets[p.AddressSet]; row != nil {
			held = slices.Contains(row.Addresses, ip)
		}
		as := &nbdb.AddressSet{Name: p.AddressSet}
		var o []ovsdb.Operation
		switch want := p.MatchesPod(pod.Namespace, nsLabels, pod.Labels); {
		case want && !held:
			o, err = nbops.EnsureInSet(c.nb, as, &as.Addresses, []string{ip})
		case !want && held:
			o, err = nbops.EnsureNotInSet(c.nb, as, &as.Addresses, []string{ip})
		}
		if err := add(o, err); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// cachedByName indexes a table's cached rows by name without copying them: callers only read them (the cache
// replaces a row on update rather than changing it).
func cachedByName[T model.Model](c *Controller, table string, name func(T) string) map[string]T {
	out := map[string]T{}
	if t := c.nb.Cache().Table(table); t != nil {
		for _, m := range t.RowsShallow() {
			if row, ok := m.(T); ok {
				out[name(row)] = row
			}
		}
	}
	return out
}

func (c *Controller) addressSetsByName() map[string]*nbdb.AddressSet {
	return cachedByName(c, nbdb.AddressSetTable, func(as *nbdb.AddressSet) string { return as.Name })
}

// memberOps puts a port into a port group or takes it out; nothing when the group does not exist (yet) or the
// cached row (from groups, uncopied) already says so.
func (c *Controller) memberOps(groups map[string]*nbdb.PortGroup, pgName, lspUUID string, member bool) ([]ovsdb.Operation, error) {
	row := groups[pgName]
	if row == nil || slices.Contains(row.Ports, lspUUID) == member {
		return nil, nil
	}
	pg := &nbdb.PortGroup{Name: pgName}
	if member {
		return nbops.EnsureInSet(c.nb, pg, &pg.Ports, []string{lspUUID})
	}
	return nbops.EnsureNotInSet(c.nb, pg, &pg.Ports, []string{lspUUID})
}

// podPeerRemovalOps takes a gone pod's IPs out of every peer address set.
func (c *Controller) podPeerRemovalOps(ips []string) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	peers := c.peers.snapshot()
	if len(peers) == 0 {
		return nil, nil
	}
	sets := c.addressSetsByName()
	for _, p := range peers {
		if row := sets[p.AddressSet]; row == nil || !slices.ContainsFunc(ips, func(ip string) bool { return slices.Contains(row.Addresses, ip) }) {
			continue
		}
		as := &nbdb.AddressSet{Name: p.AddressSet}
		o, err := nbops.EnsureNotInSet(c.nb, as, &as.Addresses, ips)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}
