// Package ownership defines how kovn marks the OVSDB rows it owns. Every row kovn writes carries
// external_ids naming the Kubernetes object (or kovn-internal concept) it exists for, so that an operator
// reading `ovn-nbctl list ACL` can tell what each row is for, and so that after a restart kovn can find
// every row whose owner is gone and remove it.
//
// The keys are:
//
//	kovn.io/owner-kind  the kind of the owner: Pod, Node, Namespace, NetworkPolicy, Service, Cluster
//	kovn.io/owner       the owner's key: "namespace/name" for namespaced objects, "name" otherwise
//	kovn.io/name        what the row is for within its owner (e.g. "port", "ingress-0-tcp"); unique per
//	                    owner and table, so (kind, owner, name) identifies one row of a table
package ownership

import (
	"fmt"
	"maps"

	"github.com/ovn-kubernetes/libovsdb/model"
)

// The external_ids keys kovn writes on every row it owns.
const (
	KeyOwnerKind = "kovn.io/owner-kind"
	KeyOwner     = "kovn.io/owner"
	KeyName      = "kovn.io/name"
)

// Kind is the kind of object that owns OVSDB rows.
type Kind string

// Owner kinds. Cluster owns the rows that exist once per cluster (the cluster router, the join switch).
const (
	KindCluster       Kind = "Cluster"
	KindNode          Kind = "Node"
	KindNamespace     Kind = "Namespace"
	KindPod           Kind = "Pod"
	KindService       Kind = "Service"
	KindNetworkPolicy Kind = "NetworkPolicy"
	// KindPolicyPeer owns the address set of a peer selector shared by NetworkPolicies (its key is the selector).
	KindPolicyPeer Kind = "PolicyPeer"
)

// Owner names the object that owns rows: its kind and its key ("namespace/name" or "name").
type Owner struct {
	Kind Kind
	Key  string
}

// NewOwner returns the owner for a namespaced object (namespace non-empty) or a cluster-scoped one.
func NewOwner(kind Kind, namespace, name string) Owner {
	if namespace == "" {
		return Owner{Kind: kind, Key: name}
	}
	return Owner{Kind: kind, Key: namespace + "/" + name}
}

func (o Owner) String() string { return string(o.Kind) + " " + o.Key }

// ID returns the identity of the owner's row with the given role name.
func (o Owner) ID(name string) ID { return ID{Owner: o, Name: name} }

// Matches reports whether external_ids name this owner.
func (o Owner) Matches(externalIDs map[string]string) bool {
	return externalIDs[KeyOwnerKind] == string(o.Kind) && externalIDs[KeyOwner] == o.Key
}

// ID identifies one row kovn owns within a table: its owner and its role name.
type ID struct {
	Owner
	Name string
}

func (id ID) String() string { return fmt.Sprintf("%s %s/%s", id.Kind, id.Key, id.Name) }

// ExternalIDs returns the external_ids that mark a row with this identity, merged over extra
// (extra may carry other informative keys; the ownership keys always win).
func (id ID) ExternalIDs(extra map[string]string) map[string]string {
	m := make(map[string]string, len(extra)+3)
	maps.Copy(m, extra)
	m[KeyOwnerKind] = string(id.Kind)
	m[KeyOwner] = id.Key
	m[KeyName] = id.Name
	return m
}

// Parse returns the identity recorded in external_ids, and false when the row is not kovn's.
func Parse(externalIDs map[string]string) (ID, bool) {
	kind, owner, name := externalIDs[KeyOwnerKind], externalIDs[KeyOwner], externalIDs[KeyName]
	if kind == "" || owner == "" {
		return ID{}, false
	}
	return ID{Owner: Owner{Kind: Kind(kind), Key: owner}, Name: name}, true
}

// IsOwned reports whether external_ids mark a row as kovn's.
func IsOwned(externalIDs map[string]string) bool {
	_, ok := Parse(externalIDs)
	return ok
}

// ClientIndex is the libovsdb client index over the identity keys, so that a lookup by identity is a
// map access in the client cache rather than a table scan.
func ClientIndex() model.ClientIndex {
	return model.ClientIndex{Columns: []model.ColumnKey{
		{Column: "external_ids", Key: KeyOwnerKind},
		{Column: "external_ids", Key: KeyOwner},
		{Column: "external_ids", Key: KeyName},
	}}
}
