package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// syncNode makes a node's subnet, switch, router port and management port exist, or removes them with the node.
func (c *Controller) syncNode(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return c.deleteNode(ctx, name)
	}
	if err != nil {
		return err
	}
	subnet, err := c.nodeSubnet(ctx, node)
	if err != nil || !subnet.IsValid() {
		return err
	}
	hadPool := c.pool(name) != nil
	if _, err := c.setPool(name, subnet); err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	ops, err := c.nodeOps(topology.ForNode(name, subnet))
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	gwChanged := false
	if gw, ok, err := c.nodeGateway(node); err == nil {
		var want *annotations.NodeGatewayInfo
		if ok {
			want = &gw
		}
		gwOps, err := c.gatewayOps(name, subnet, want)
		if err != nil {
			return fmt.Errorf("node %s gateway: %w", name, err)
		}
		ops, gwChanged = append(ops, gwOps...), len(gwOps) > 0
	}
	if err := c.apply(ctx, "node "+name, ops); err != nil {
		return err
	}
	if !hadPool || gwChanged {
		// Pods that waited for the node's subnet; pods whose egress NAT lives on the (changed) gateway router;
		// services with load balancers on the node's switch or gateway router.
		c.enqueuePodsOn(name)
		c.enqueueNodeServices()
	}
	return nil
}

// nodeSubnet returns the node's subnet: the one its annotation records when that is valid and free, otherwise
// a newly allocated one, recorded in the annotation before it is used.
func (c *Controller) nodeSubnet(ctx context.Context, node *corev1.Node) (netip.Prefix, error) {
	ref := &corev1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID, APIVersion: "v1"}
	recorded, ok, err := annotations.ParseNodeSubnet(node.Annotations)
	if err != nil {
		c.warn(ref, "InvalidSubnetAnnotation", fmt.Sprintf("ignoring malformed node subnet annotation: %v", err))
	} else if ok {
		if err := c.subnets.Reserve(node.Name, recorded); err == nil {
			return recorded, nil
		} else {
			c.warn(ref, "SubnetConflict", fmt.Sprintf("recorded subnet %s cannot be used (%v); allocating another", recorded, err))
		}
	}
	subnet, err := c.subnets.Allocate(node.Name)
	if errors.Is(err, ipam.ErrFull) {
		c.warn(ref, "NoSubnetLeft", fmt.Sprintf("no free node subnet left in the cluster CIDRs %v; pods on this node get no network until one is freed", c.cfg.Cluster.ClusterCIDRs))
		return netip.Prefix{}, err
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotations.NodeSubnets, annotations.MarshalNodeSubnet(subnet))
	if _, err := c.kube.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		c.subnets.Release(node.Name)
		return netip.Prefix{}, fmt.Errorf("record subnet %s on node %s: %w", subnet, node.Name, err)
	}
	c.log.Info("node subnet allocated", "node", node.Name, "subnet", subnet)
	return subnet, nil
}

// nodeOps returns the operations that make a node's rows equal to n.
func (c *Controller) nodeOps(n topology.Node) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	// The switch's ports are the pods': only its own columns are compared.
	if err := add(nbops.CreateOrUpdate(c.nb, n.Switch, &n.Switch.OtherConfig, &n.Switch.ExternalIDs)); err != nil {
		return nil, err
	}
	if err := add(nbops.CreateOrUpdate(c.nb, n.RouterPort)); err != nil {
		return nil, err
	}
	router := &nbdb.LogicalRouter{Name: topology.ClusterRouter}
	if err := add(nbops.EnsureInSet(c.nb, router, &router.Ports, []string{n.RouterPort.UUID})); err != nil {
		return nil, err
	}
	for _, p := range []*nbdb.LogicalSwitchPort{n.SwitchRouterPort, n.ManagementPort} {
		if err := add(nbops.CreateOrUpdate(c.nb, p)); err != nil {
			return nil, err
		}
	}
	if err := add(nbops.EnsureInSet(c.nb, n.Switch, &n.Switch.Ports, []string{n.SwitchRouterPort.UUID, n.ManagementPort.UUID})); err != nil {
		return nil, err
	}
	// The node's own host reaches its pods whatever the policies say (kubelet probes).
	acl := aclRow(ownership.NewOwner(ownership.KindNode, "", n.Switch.Name).ID("node-allow"),
		policy.NodeACL(n.Switch.Name, n.ManagementIP), "")
	if err := add(nbops.CreateOrUpdate(c.nb, acl)); err != nil {
		return nil, err
	}
	if err := add(nbops.EnsureInSet(c.nb, n.Switch, &n.Switch.ACLs, []string{acl.UUID})); err != nil {
		return nil, err
	}
	grp, err := nbops.Lookup(c.nb, &nbdb.LoadBalancerGroup{Name: topology.ClusterLBGroup})
	if err != nil || grp == nil {
		return nil, fmt.Errorf("cluster load-balancer group: %w (missing: %v)", err, grp == nil)
	}
	err = add(nbops.EnsureInSet(c.nb, n.Switch, &n.Switch.LoadBalancerGroup, []string{grp.UUID}))
	return ops, err
}

// deleteNode removes the node's rows (its switch takes the pods' ports with it), takes its pods' IPs out of the
// namespace and policy-peer address sets (their ports are gone, so their own teardown finds nothing to remove,
// and the subnet's IPs go to another node's pods), and frees its subnet.
func (c *Controller) deleteNode(ctx context.Context, name string) error {
	ops, err := nbops.DeleteByOwner(c.nb, ownership.NewOwner(ownership.KindNode, "", name))
	if err != nil {
		return err
	}
	if pool := c.pool(name); pool != nil {
		var sets []*nbdb.AddressSet
		err := c.nb.WhereCache(func(as *nbdb.AddressSet) bool {
			kind := as.ExternalIDs[ownership.KeyOwnerKind]
			return kind == string(ownership.KindNamespace) || kind == string(ownership.KindPolicyPeer)
		}).List(ctx, &sets)
		if err != nil {
			return err
		}
		for _, as := range sets {
			var gone []string
			for _, a := range as.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil && pool.Subnet().Contains(ip) {
					gone = append(gone, a)
				}
			}
			o, err := nbops.EnsureNotInSet(c.nb, as, &as.Addresses, gone)
			if err != nil {
				return err
			}
			ops = append(ops, o...)
		}
	}
	if err := c.apply(ctx, "delete node "+name, ops); err != nil {
		return err
	}
	c.subnets.Release(name)
	c.dropPool(name)
	c.enqueueNodeServices()
	return nil
}

func (c *Controller) enqueuePodsOn(node string) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range pods {
		if p.Spec.NodeName == node {
			c.podQ.Add(p.Namespace + "/" + p.Name)
		}
	}
}
