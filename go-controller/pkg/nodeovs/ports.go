package nodeovs

import (
	"context"
	"fmt"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

// External_ids keys on the ports kovn adds to the integration bridge.
const (
	// KeyIfaceID binds the interface to the logical switch port of that name (read by ovn-controller).
	KeyIfaceID = "iface-id"
	// KeyOVNInstalled is set to "true" by ovn-controller once the port's flows are in place.
	KeyOVNInstalled = "ovn-installed"
	// KeySandbox and KeyIfName name the CNI attachment (container ID, interface in the pod) a port serves.
	KeySandbox = "kovn.io/sandbox"
	KeyIfName  = "kovn.io/ifname"
	// KeyPod names the pod ("namespace/name").
	KeyPod = "kovn.io/pod"
)

// PortSpec is a port kovn wants on the integration bridge.
type PortSpec struct {
	Name        string // OVS port and interface name (the host-side device)
	Type        string // "" for an existing device (veth), "internal" for an OVS internal port
	MAC         string // requested MAC of an internal port
	ExternalIDs map[string]string
}

// EnsurePort makes the port exist on the bridge with the given interface settings; an existing port of that
// name gets its external_ids (and MAC) updated, which makes a repeated CNI ADD harmless.
func EnsurePort(ctx context.Context, c client.Client, bridge string, p PortSpec) error {
	iface := &vswitchd.Interface{Name: p.Name, Type: p.Type, ExternalIDs: p.ExternalIDs}
	if p.MAC != "" {
		iface.MAC = &p.MAC
	}
	port := &vswitchd.Port{Name: p.Name, ExternalIDs: p.ExternalIDs}
	existing, err := nbops.Lookup(c, &vswitchd.Port{Name: p.Name})
	if err != nil {
		return err
	}
	var ops []ovsdb.Operation
	if existing != nil {
		// Only kovn's keys are set: ovn-controller's own (ovn-installed) stay.
		oldIface, err := Interface(c, p.Name)
		if err != nil {
			return err
		}
		if oldIface != nil {
			if ops, err = setOwnKeys(c, oldIface, &oldIface.ExternalIDs, p.ExternalIDs); err != nil {
				return err
			}
		}
		o, err := setOwnKeys(c, existing, &existing.ExternalIDs, p.ExternalIDs)
		if err != nil {
			return err
		}
		ops = append(ops, o...)
		if p.MAC != "" {
			o, err := nbops.CreateOrUpdate(c, iface, &iface.MAC)
			if err != nil {
				return err
			}
			ops = append(ops, o...)
		}
	} else {
		iface.UUID, port.UUID = nbops.NewNamedUUID(), nbops.NewNamedUUID()
		port.Interfaces = []string{iface.UUID}
		for _, m := range []model.Model{iface, port} {
			o, err := c.Create(m)
			if err != nil {
				return err
			}
			ops = append(ops, o...)
		}
		br := &vswitchd.Bridge{Name: bridge}
		o, err := nbops.InsertToSet(c, br, &br.Ports, []string{port.UUID})
		if err != nil {
			return fmt.Errorf("add port %s to bridge %s: %w", p.Name, bridge, err)
		}
		ops = append(ops, o...)
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("add port %s to bridge %s: %w", p.Name, bridge, err)
	}
	return nil
}

// DeletePort removes a port (and its interface) from whatever bridge holds it; a missing port is not an error.
func DeletePort(ctx context.Context, c client.Client, name string) error {
	ops, err := nbops.Delete(c, &vswitchd.Port{Name: name})
	if err != nil {
		return err
	}
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		return fmt.Errorf("delete port %s: %w", name, err)
	}
	return nil
}

// Interface returns the cached interface of that name, or nil.
func Interface(c client.Client, name string) (*vswitchd.Interface, error) {
	return nbops.Lookup(c, &vswitchd.Interface{Name: name})
}

// PodInterfaces returns the interfaces kovn added for CNI attachments (those with a sandbox key).
func PodInterfaces(c client.Client) ([]*vswitchd.Interface, error) {
	var out []*vswitchd.Interface
	err := c.WhereCache(func(i *vswitchd.Interface) bool { return i.ExternalIDs[KeySandbox] != "" }).List(context.Background(), &out)
	return out, err
}

// setOwnKeys returns the mutations that set kv in a cached row's external_ids (field), keeping other keys;
// nothing when the row already has them.
func setOwnKeys(c client.Client, row model.Model, field *map[string]string, kv map[string]string) ([]ovsdb.Operation, error) {
	if mapContains(*field, kv) {
		return nil, nil
	}
	return setMapKeys(c, row, field, kv)
}
