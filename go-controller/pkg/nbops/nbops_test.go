package nbops_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

var (
	node1 = ownership.NewOwner(ownership.KindNode, "", "node1")
	podA  = ownership.NewOwner(ownership.KindPod, "default", "a")
	podB  = ownership.NewOwner(ownership.KindPod, "default", "b")
	polP  = ownership.NewOwner(ownership.KindNetworkPolicy, "default", "deny-all")
)

// must(t)(ops, err) returns ops, failing the test on err.
func must(t testing.TB) func([]ovsdb.Operation, error) []ovsdb.Operation {
	return func(ops []ovsdb.Operation, err error) []ovsdb.Operation {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ops
	}
}

func commit(t testing.TB, c client.Client, ops []ovsdb.Operation) nbops.Result {
	t.Helper()
	res, err := nbops.Transact(context.Background(), c, ops)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func nodeSwitch() *nbdb.LogicalSwitch {
	return &nbdb.LogicalSwitch{
		Name:        "node1",
		OtherConfig: map[string]string{"subnet": "10.244.1.0/24"},
		ExternalIDs: node1.ID("switch").ExternalIDs(nil),
	}
}

func podPort(owner ownership.Owner, name, mac, ip string) *nbdb.LogicalSwitchPort {
	return &nbdb.LogicalSwitchPort{
		Name:         name,
		Addresses:    []string{mac + " " + ip},
		PortSecurity: []string{mac + " " + ip},
		ExternalIDs:  owner.ID("port").ExternalIDs(map[string]string{"pod": "true"}),
	}
}

// buildTopology writes a switch with two pod ports, and a port group with one ACL, in one transaction.
func buildTopology(t *testing.T, c client.Client) (*nbdb.LogicalSwitch, []*nbdb.LogicalSwitchPort) {
	t.Helper()
	ls := nodeSwitch()
	ops := must(t)(nbops.CreateOrUpdate(c, ls, &ls.OtherConfig, &ls.ExternalIDs))
	ports := []*nbdb.LogicalSwitchPort{
		podPort(podA, "default_a", "0a:58:0a:f4:01:05", "10.244.1.5"),
		podPort(podB, "default_b", "0a:58:0a:f4:01:06", "10.244.1.6"),
	}
	var uuids []string
	for _, p := range ports {
		ops = append(ops, must(t)(nbops.CreateOrUpdate(c, p))...)
		uuids = append(uuids, p.UUID)
	}
	ops = append(ops, must(t)(nbops.InsertToSet(c, ls, &ls.Ports, uuids))...)
	acl := &nbdb.ACL{
		Direction:   nbdb.ACLDirectionToLport,
		Priority:    1000,
		Match:       `outport == @deny_all && ip4`,
		Action:      nbdb.ACLActionDrop,
		ExternalIDs: polP.ID("ingress-deny").ExternalIDs(nil),
	}
	ops = append(ops, must(t)(nbops.CreateOrUpdate(c, acl))...)
	pg := &nbdb.PortGroup{
		Name:        "deny_all",
		Ports:       uuids,
		ACLs:        []string{acl.UUID},
		ExternalIDs: polP.ID("pods").ExternalIDs(nil),
	}
	ops = append(ops, must(t)(nbops.CreateOrUpdate(c, pg))...)
	res := commit(t, c, ops)
	if len(res.UUIDs) != 5 {
		t.Fatalf("want 5 inserted rows (switch, 2 ports, ACL, port group), got %v", res.UUIDs)
	}
	return ls, ports
}

func TestTopologyInOneTransaction(t *testing.T) {
	c := ovntest.StartNB(t).NB
	buildTopology(t, c)

	got, err := nbops.Lookup(c, &nbdb.LogicalSwitch{Name: "node1"})
	if err != nil || got == nil {
		t.Fatalf("switch not found by name: %v", err)
	}
	if len(got.Ports) != 2 {
		t.Fatalf("switch has %d ports, want 2", len(got.Ports))
	}
	lsp, err := nbops.Lookup(c, &nbdb.LogicalSwitchPort{Name: "default_a"})
	if err != nil || lsp == nil || lsp.ExternalIDs[ownership.KeyOwner] != "default/a" || lsp.ExternalIDs[ownership.KeyOwnerKind] != "Pod" {
		t.Fatalf("port default_a: %v %+v", err, lsp)
	}
	// An ACL has no schema index: it is found by its ownership identity.
	acl, err := nbops.Lookup(c, &nbdb.ACL{ExternalIDs: polP.ID("ingress-deny").ExternalIDs(nil)})
	if err != nil || acl == nil || acl.Action != nbdb.ACLActionDrop {
		t.Fatalf("ACL by identity: %v %+v", err, acl)
	}
	pg, err := nbops.Lookup(c, &nbdb.PortGroup{Name: "deny_all"})
	if err != nil || pg == nil || len(pg.Ports) != 2 || len(pg.ACLs) != 1 || pg.ACLs[0] != acl.UUID {
		t.Fatalf("port group: %v %+v", err, pg)
	}

	rows, err := nbops.FindByOwner(c, polP)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, r := range rows {
		found = append(found, r.Table+":"+r.ID.Name)
	}
	if strings.Join(found, ",") != "ACL:ingress-deny,Port_Group:pods" {
		t.Fatalf("rows of %s: %v", polP, found)
	}
}

func TestCreateOrUpdateIsIdempotentAndMinimal(t *testing.T) {
	c := ovntest.StartNB(t).NB
	buildTopology(t, c)

	// The same desired rows again: nothing to write.
	ls := nodeSwitch()
	if ops := must(t)(nbops.CreateOrUpdate(c, ls, &ls.OtherConfig, &ls.ExternalIDs)); len(ops) != 0 {
		t.Fatalf("unchanged switch produced %d ops: %v", len(ops), ops)
	}
	p := podPort(podA, "default_a", "0a:58:0a:f4:01:05", "10.244.1.5")
	if ops := must(t)(nbops.CreateOrUpdate(c, p)); len(ops) != 0 {
		t.Fatalf("unchanged port produced ops: %v", ops)
	}
	// Set order does not matter.
	p.Addresses = []string{"0a:58:0a:f4:01:05 10.244.1.5"}
	if ops := must(t)(nbops.CreateOrUpdate(c, p, &p.Addresses)); len(ops) != 0 {
		t.Fatalf("same addresses produced ops: %v", ops)
	}

	// One changed column: one update touching that column only.
	p.Addresses = []string{"0a:58:0a:f4:01:07 10.244.1.7"}
	ops := must(t)(nbops.CreateOrUpdate(c, p))
	if len(ops) != 1 || ops[0].Op != ovsdb.OperationUpdate || len(ops[0].Row) != 1 || ops[0].Row["addresses"] == nil {
		t.Fatalf("want one update of addresses, got %+v", ops)
	}
	commit(t, c, ops)
	got, _ := nbops.Lookup(c, &nbdb.LogicalSwitchPort{Name: "default_a"})
	if got.Addresses[0] != "0a:58:0a:f4:01:07 10.244.1.7" {
		t.Fatalf("address not updated: %v", got.Addresses)
	}

	// Columns OVN writes (northd's "up") are not kovn's to reset.
	up := true
	got.Up = &up
	commit(t, c, must(t)(nbops.CreateOrUpdate(c, got, &got.Up)))
	if ops := must(t)(nbops.CreateOrUpdate(c, p)); len(ops) != 0 {
		t.Fatalf("an update would reset the port's up column: %+v", ops)
	}

	// Emptying a column is a change too.
	p.PortSecurity = nil
	commit(t, c, must(t)(nbops.CreateOrUpdate(c, p)))
	got, _ = nbops.Lookup(c, &nbdb.LogicalSwitchPort{Name: "default_a"})
	if len(got.PortSecurity) != 0 {
		t.Fatalf("port_security not cleared: %v", got.PortSecurity)
	}
	// Columns not named in fields are left alone: ports of the switch survive an update of other_config.
	ls.OtherConfig = map[string]string{"subnet": "10.244.9.0/24"}
	commit(t, c, must(t)(nbops.CreateOrUpdate(c, ls, &ls.OtherConfig)))
	sw, _ := nbops.Lookup(c, &nbdb.LogicalSwitch{Name: "node1"})
	if len(sw.Ports) != 2 || sw.OtherConfig["subnet"] != "10.244.9.0/24" {
		t.Fatalf("switch after update: %+v", sw)
	}
}

func TestDeleteByOwnerRemovesRowsAndReferences(t *testing.T) {
	c := ovntest.StartNB(t).NB
	buildTopology(t, c)

	// Pod a's port is referenced by the switch and the port group: both references go with it.
	commit(t, c, must(t)(nbops.DeleteByOwner(c, podA)))
	if rows, _ := nbops.FindByOwner(c, podA); len(rows) != 0 {
		t.Fatalf("rows of %s left: %+v", podA, rows)
	}
	sw, _ := nbops.Lookup(c, &nbdb.LogicalSwitch{Name: "node1"})
	pg, _ := nbops.Lookup(c, &nbdb.PortGroup{Name: "deny_all"})
	if len(sw.Ports) != 1 || len(pg.Ports) != 1 {
		t.Fatalf("after deleting pod a: switch ports %v, port group ports %v", sw.Ports, pg.Ports)
	}
	// Deleting again writes nothing.
	if ops := must(t)(nbops.DeleteByOwner(c, podA)); len(ops) != 0 {
		t.Fatalf("second delete produced ops: %v", ops)
	}
	if ops := must(t)(nbops.Delete(c, &nbdb.LogicalSwitchPort{Name: "default_a"})); len(ops) != 0 {
		t.Fatalf("delete of a missing port produced ops: %v", ops)
	}
	// The policy's rows: port group and ACL.
	commit(t, c, must(t)(nbops.DeleteByOwner(c, polP)))
	if n := c.Cache().Table(nbdb.ACLTable).Len() + c.Cache().Table(nbdb.PortGroupTable).Len(); n != 0 {
		t.Fatalf("%d ACL/port group rows left", n)
	}
	// The node's switch; its remaining port (owned by pod b) goes with it as OVSDB garbage.
	commit(t, c, must(t)(nbops.Delete(c, &nbdb.LogicalSwitch{Name: "node1"})))
	if n := c.Cache().Table(nbdb.LogicalSwitchPortTable).Len(); n != 0 {
		t.Fatalf("%d ports left after their switch was deleted", n)
	}
}

func TestListOwnedFindsStaleRows(t *testing.T) {
	c := ovntest.StartNB(t).NB
	buildTopology(t, c)
	// A row that is not kovn's is never listed.
	commit(t, c, must(t)(c.Create(&nbdb.LogicalSwitch{UUID: "x", Name: "operator-made"})))

	live := map[ownership.Owner]bool{node1: true, podB: true, polP: true}
	stale, err := nbops.ListOwned(c, func(id ownership.ID) bool { return !live[id.Owner] })
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0].ID.Owner != podA || stale[0].Table != nbdb.LogicalSwitchPortTable {
		t.Fatalf("stale rows: %+v", stale)
	}
	commit(t, c, must(t)(nbops.DeleteRows(c, stale)))
	all, _ := nbops.ListOwned(c, nil)
	if len(all) != 4 {
		t.Fatalf("want 4 owned rows left, got %d", len(all))
	}
}

func TestRefusedTransactionChangesNothing(t *testing.T) {
	c := ovntest.StartNB(t).NB
	buildTopology(t, c)

	// A new switch plus a port whose name is already taken: the index on Logical_Switch_Port.name refuses
	// the whole transaction, including the switch.
	ls := &nbdb.LogicalSwitch{Name: "node2", ExternalIDs: ownership.NewOwner(ownership.KindNode, "", "node2").ID("switch").ExternalIDs(nil)}
	ops := must(t)(nbops.CreateOrUpdate(c, ls))
	dup := &nbdb.LogicalSwitchPort{UUID: nbops.NewNamedUUID(), Name: "default_a"}
	ops = append(ops, must(t)(c.Create(dup))...)
	ops = append(ops, must(t)(nbops.InsertToSet(c, ls, &ls.Ports, []string{dup.UUID}))...)
	_, err := nbops.Transact(context.Background(), c, ops)
	if err == nil || !nbops.IsConstraintViolation(err) {
		t.Fatalf("want a constraint violation, got %v", err)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "Logical_Switch_Port") || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("error does not say what failed: %v", err)
	}
	if got, _ := nbops.Lookup(c, &nbdb.LogicalSwitch{Name: "node2"}); got != nil {
		t.Fatalf("switch node2 exists after a refused transaction")
	}

	// Deleting a port that a switch still references, behind the write layer's back, breaks referential
	// integrity: the server refuses and says so.
	lsp, _ := nbops.Lookup(c, &nbdb.LogicalSwitchPort{Name: "default_b"})
	raw := []ovsdb.Operation{{Op: ovsdb.OperationDelete, Table: nbdb.LogicalSwitchPortTable,
		Where: []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: lsp.UUID})}}}
	_, err = nbops.Transact(context.Background(), c, raw)
	t.Log(err)
	if !nbops.IsReferentialIntegrity(err) {
		t.Fatalf("want a referential integrity violation, got %v", err)
	}
	if got, _ := nbops.Lookup(c, &nbdb.LogicalSwitchPort{Name: "default_b"}); got == nil {
		t.Fatalf("port deleted by a refused transaction")
	}

	// A value the schema forbids (ACL priority above 32767): the server refuses it with a constraint violation.
	acl := &nbdb.ACL{Direction: nbdb.ACLDirectionToLport, Priority: 40000, Match: "1", Action: nbdb.ACLActionAllow,
		ExternalIDs: polP.ID("bad").ExternalIDs(nil)}
	_, err = nbops.Transact(context.Background(), c, must(t)(nbops.CreateOrUpdate(c, acl)))
	if err == nil {
		t.Fatal("ACL with priority 40000 accepted")
	}
	t.Log(err)
	if rows, _ := nbops.FindByOwner(c, polP); len(rows) != 2 {
		t.Fatalf("policy rows changed by a refused transaction: %d", len(rows))
	}
}

func TestMutateNeedsAnExistingRow(t *testing.T) {
	c := ovntest.StartNB(t).NB
	as := &nbdb.AddressSet{Name: "missing"}
	_, err := nbops.InsertToSet(c, as, &as.Addresses, []string{"10.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("want a not-found error naming the address set, got %v", err)
	}
	ns := ownership.NewOwner(ownership.KindNamespace, "", "default")
	as = &nbdb.AddressSet{Name: "a1", ExternalIDs: ns.ID("pods").ExternalIDs(nil)}
	commit(t, c, must(t)(nbops.CreateOrUpdate(c, as)))
	commit(t, c, must(t)(nbops.InsertToSet(c, as, &as.Addresses, []string{"10.0.0.1", "10.0.0.2"})))
	commit(t, c, must(t)(nbops.RemoveFromSet(c, as, &as.Addresses, []string{"10.0.0.1", "10.0.0.9"})))
	got, _ := nbops.Lookup(c, &nbdb.AddressSet{Name: "a1"})
	if fmt.Sprint(got.Addresses) != "[10.0.0.2]" {
		t.Fatalf("addresses: %v", got.Addresses)
	}
}

// A row named by UUID is mutated without a lookup by index; a UUID the cache does not hold is not found, and
// EnsureInSet leaves the model naming its row by UUID.
func TestMutateByUUID(t *testing.T) {
	c := ovntest.StartNB(t).NB
	ns := ownership.NewOwner(ownership.KindNamespace, "", "default")
	as := &nbdb.AddressSet{Name: "a1", ExternalIDs: ns.ID("pods").ExternalIDs(nil)}
	commit(t, c, must(t)(nbops.CreateOrUpdate(c, as)))
	row, _ := nbops.Lookup(c, &nbdb.AddressSet{Name: "a1"})
	gone := &nbdb.AddressSet{UUID: "7a5b1c3e-0000-4000-8000-000000000001"}
	if _, err := nbops.InsertToSet(c, gone, &gone.Addresses, []string{"10.0.0.1"}); err == nil {
		t.Fatal("InsertToSet on an unknown UUID succeeded")
	}
	byName := &nbdb.AddressSet{Name: "a1"}
	commit(t, c, must(t)(nbops.EnsureInSet(c, byName, &byName.Addresses, []string{"10.0.0.1"})))
	if byName.UUID != row.UUID {
		t.Fatalf("EnsureInSet left the model with UUID %q, want the row's %q", byName.UUID, row.UUID)
	}
	byUUID := &nbdb.AddressSet{UUID: row.UUID}
	commit(t, c, must(t)(nbops.InsertToSet(c, byUUID, &byUUID.Addresses, []string{"10.0.0.2"})))
	if ops := must(t)(nbops.EnsureInSet(c, byName, &byName.Addresses, []string{"10.0.0.1", "10.0.0.2"})); len(ops) != 0 {
		t.Fatalf("EnsureInSet of held values: %v", ops)
	}
	got, _ := nbops.Lookup(c, &nbdb.AddressSet{Name: "a1"})
	if fmt.Sprint(got.Addresses) != "[10.0.0.1 10.0.0.2]" {
		t.Fatalf("addresses: %v", got.Addresses)
	}
}
