// Package nodeovs configures a node's local Open vSwitch through its OVSDB (libovsdb, never ovs-vsctl): the
// Open_vSwitch external_ids ovn-controller reads, the integration bridge, and the ports of pods and of the
// management interface. It also waits, by monitor, for ovn-controller to report a port installed.
package nodeovs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

// Settings are what ovn-controller needs to know about its node.
type Settings struct {
	SystemID     string // the chassis name: kovn uses the node name
	OVNRemote    string // the Southbound database, e.g. tcp:10.0.0.1:6642
	EncapType    string // geneve or vxlan
	EncapIP      string // this node's tunnel endpoint address
	Bridge       string // the integration bridge, br-int
	DatapathType string // system, or netdev for the userspace datapath
}

// ExternalIDs returns the Open_vSwitch external_ids the settings stand for. An empty EncapIP is left out: the
// node agent sets it once it knows the node IP.
func (s Settings) ExternalIDs() map[string]string {
	ids := map[string]string{
		"system-id":                 s.SystemID,
		"ovn-remote":                s.OVNRemote,
		"ovn-encap-type":            s.EncapType,
		"ovn-encap-ip":              s.EncapIP,
		"ovn-bridge":                s.Bridge,
		"ovn-bridge-datapath-type":  s.DatapathType,
		"ovn-remote-probe-interval": "10000",
	}
	if s.EncapIP == "" {
		delete(ids, "ovn-encap-ip")
	}
	return ids
}

// Configure sets the Open_vSwitch external_ids (other keys are kept) and makes the integration bridge exist
// with the datapath type, secure fail mode and no in-band control, all in one transaction.
func Configure(ctx context.Context, c client.Client, s Settings) error {
	var ops []ovsdb.Operation
	root, err := openvSwitchRow(c)
	if err != nil {
		return err
	}
	if root == nil {
		root = &vswitchd.OpenvSwitch{UUID: nbops.NewNamedUUID()}
		o, err := c.Create(root)
		if err != nil {
			return err
		}
		ops = append(ops, o...)
	}
	want := s.ExternalIDs()
	if !mapContains(root.ExternalIDs, want) {
		o, err := setMapKeys(c, root, &root.ExternalIDs, want)
		if err != nil {
			return err
		}
		ops = append(ops, o...)
	}
	br, err := bridgeOps(c, root, s)
	if err != nil {
		return err
	}
	ops = append(ops, br...)
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("configure OVS for OVN: %w", err)
	}
	return nil
}

// BridgeSpec is an OVS bridge kovn wants.
type BridgeSpec struct {
	Name         string
	DatapathType string
	FailMode     string // secure or standalone
	OtherConfig  map[string]string
	ExternalIDs  map[string]string
}

// bridgeOps creates the integration bridge (with its internal port) or corrects its settings.
func bridgeOps(c client.Client, root *vswitchd.OpenvSwitch, s Settings) ([]ovsdb.Operation, error) {
	return BridgeOps(c, root, BridgeSpec{
		Name: s.Bridge, DatapathType: s.DatapathType, FailMode: vswitchd.BridgeFailModeSecure,
		OtherConfig: map[string]string{"disable-in-band": "true"},
		ExternalIDs: ownership.NewOwner(ownership.KindNode, "", s.SystemID).ID("integration-bridge").ExternalIDs(nil),
	})
}

// EnsureBridge makes a bridge exist with the given settings, in its own transaction.
func EnsureBridge(ctx context.Context, c client.Client, b BridgeSpec) error {
	root, err := openvSwitchRow(c)
	if err != nil {
		return err
	}
	if root == nil {
		return fmt.Errorf("bridge %s: the Open_vSwitch row does not exist yet", b.Name)
	}
	ops, err := BridgeOps(c, root, b)
	if err != nil {
		return err
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	return nil
}

// BridgeOps returns the operations that create the bridge (with its internal port) or correct its settings.
func BridgeOps(c client.Client, root *vswitchd.OpenvSwitch, b BridgeSpec) ([]ovsdb.Operation, error) {
	failMode := b.FailMode
	br := &vswitchd.Bridge{Name: b.Name, DatapathType: b.DatapathType, FailMode: &failMode, OtherConfig: b.OtherConfig, ExternalIDs: b.ExternalIDs}
	existing, err := nbops.Lookup(c, &vswitchd.Bridge{Name: b.Name})
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nbops.CreateOrUpdate(c, br, &br.DatapathType, &br.FailMode, &br.OtherConfig)
	}
	iface := &vswitchd.Interface{UUID: nbops.NewNamedUUID(), Name: b.Name, Type: "internal"}
	port := &vswitchd.Port{UUID: nbops.NewNamedUUID(), Name: b.Name, Interfaces: []string{iface.UUID}}
	br.UUID = nbops.NewNamedUUID()
	br.Ports = []string{port.UUID}
	var ops []ovsdb.Operation
	for _, m := range []model.Model{iface, port, br} {
		o, err := c.Create(m)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	o, err := c.Where(root).Mutate(root, model.Mutation{Field: &root.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: []string{br.UUID}})
	return append(ops, o...), err
}

// openvSwitchRow returns the database's single Open_vSwitch row, or nil when it does not exist yet.
func openvSwitchRow(c client.Client) (*vswitchd.OpenvSwitch, error) {
	var rows []*vswitchd.OpenvSwitch
	if err := c.List(context.Background(), &rows); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0], nil
}

// setMapKeys replaces the given keys of a map column (removing their old values first), keeping other keys.
func setMapKeys(c client.Client, m model.Model, field *map[string]string, kv map[string]string) ([]ovsdb.Operation, error) {
	keys := slices.Sorted(maps.Keys(kv))
	return c.Where(m).Mutate(m,
		model.Mutation{Field: field, Mutator: ovsdb.MutateOperationDelete, Value: keys},
		model.Mutation{Field: field, Mutator: ovsdb.MutateOperationInsert, Value: kv},
	)
}

func mapContains(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// SetExternalIDs sets the given keys of the Open_vSwitch row's external_ids (other keys are kept); nothing is
// written when they already have these values.
func SetExternalIDs(ctx context.Context, c client.Client, kv map[string]string) error {
	root, err := openvSwitchRow(c)
	if err != nil {
		return err
	}
	if root == nil {
		return fmt.Errorf("set external_ids: the Open_vSwitch row does not exist yet")
	}
	if mapContains(root.ExternalIDs, kv) {
		return nil
	}
	ops, err := setMapKeys(c, root, &root.ExternalIDs, kv)
	if err != nil {
		return err
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("set Open_vSwitch external_ids: %w", err)
	}
	return nil
}

// DeleteBridge removes a bridge (its ports and interfaces go with it); a missing bridge is not an error.
func DeleteBridge(ctx context.Context, c client.Client, name string) error {
	br, err := nbops.Lookup(c, &vswitchd.Bridge{Name: name})
	if err != nil || br == nil {
		return err
	}
	root, err := openvSwitchRow(c)
	if err != nil || root == nil {
		return err
	}
	ops, err := c.Where(root).Mutate(root, model.Mutation{Field: &root.Bridges, Mutator: ovsdb.MutateOperationDelete, Value: []string{br.UUID}})
	if err != nil {
		return err
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// BridgeInterfaces returns the interfaces of a bridge's ports, by interface name.
func BridgeInterfaces(c client.Client, bridge string) (map[string]*vswitchd.Interface, error) {
	br, err := nbops.Lookup(c, &vswitchd.Bridge{Name: bridge})
	if err != nil || br == nil {
		return nil, err
	}
	out := map[string]*vswitchd.Interface{}
	for _, pu := range br.Ports {
		p, err := nbops.Lookup(c, &vswitchd.Port{UUID: pu})
		if err != nil || p == nil {
			continue
		}
		for _, iu := range p.Interfaces {
			if i, err := nbops.Lookup(c, &vswitchd.Interface{UUID: iu}); err == nil && i != nil {
				out[i.Name] = i
			}
		}
	}
	return out, nil
}

// DeleteExternalIDs removes keys from the Open_vSwitch row's external_ids.
func DeleteExternalIDs(ctx context.Context, c client.Client, keys ...string) error {
	root, err := openvSwitchRow(c)
	if err != nil || root == nil {
		return err
	}
	ops, err := c.Where(root).Mutate(root, model.Mutation{Field: &root.ExternalIDs, Mutator: ovsdb.MutateOperationDelete, Value: keys})
	if err != nil {
		return err
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("delete Open_vSwitch external_ids %v: %w", keys, err)
	}
	return nil
}

// WaitApplied asks ovs-vswitchd to confirm that it has applied the database as it is now (next_cfg is bumped)
// and waits until it has (cur_cfg catches up), as `ovs-vsctl --wait=vswitchd` does. Devices of bridges and ports
// created before the call are configured (MAC, MTU, flags) when it returns.
func WaitApplied(ctx context.Context, c client.Client) error {
	root, err := openvSwitchRow(c)
	if err != nil || root == nil {
		return fmt.Errorf("wait for ovs-vswitchd: no Open_vSwitch row (%v)", err)
	}
	ops, err := c.Where(root).Mutate(root, model.Mutation{Field: &root.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1})
	if err != nil {
		return err
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("wait for ovs-vswitchd: %w", err)
	}
	for {
		r, err := openvSwitchRow(c)
		if err != nil {
			return err
		}
		if r != nil && r.NextCfg > root.NextCfg && r.CurCfg >= r.NextCfg {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ovs-vswitchd did not apply the configuration (cur_cfg %d, next_cfg %d): %w", r.CurCfg, r.NextCfg, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
