package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// syncNamespace keeps the namespace's address set (its pods add and remove their own IPs) and removes it with
// the namespace.
func (c *Controller) syncNamespace(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		ops, err := nbops.Delete(c.nb, &nbdb.AddressSet{Name: topology.NamespaceAddressSet(name)})
		if err != nil {
			return err
		}
		return c.apply(ctx, "delete namespace "+name, ops)
	}
	if err != nil {
		return err
	}
	c.warnBadEgressAnnotation(ns)
	c.warnBadACLLogging(ns)
	as := topology.ForNamespace(name, nil)
	ops, err := nbops.CreateOrUpdate(c.nb, as, &as.ExternalIDs)
	if err != nil {
		return err
	}
	return c.apply(ctx, "namespace "+name, ops)
}
