// Package nbops is kovn's OVSDB write layer. Its helpers turn desired rows into the ovsdb.Operations that make
// the database match them, reading the current state from the libovsdb client cache, so that a caller can batch
// one whole reconcile into one transaction (see Transact). Rows are identified by UUID, by a schema index, by
// a client index (name, or kovn's ownership identity; see package ownership), in that order.
//
// The helpers are written for the Northbound database but work against any libovsdb client (the node agent
// uses them on the local Open_vSwitch database).
package nbops

import (
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/mapper"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
)

var namedUUIDCounter atomic.Uint64

// NewNamedUUID returns a fresh named UUID ("kovn" + counter), valid within one transaction to refer to a row
// that the same transaction inserts.
func NewNamedUUID() string {
	return fmt.Sprintf("kovn%d", namedUUIDCounter.Add(1))
}

// Lookup returns a copy of the cached row that m identifies (by UUID, schema index or client index), or nil
// when there is none. It fails when m identifies more than one row or carries no usable identity.
func Lookup[T model.Model](c client.Client, m T) (T, error) {
	var zero T
	row, err := lookupShared(c, m)
	if err != nil || row == nil {
		return zero, err
	}
	return model.Clone(row).(T), nil
}

// lookupShared is Lookup without the copy: the cached row itself, which callers must only read.
//
// The cache answers from the first index the model has values for, and an index over a missing value (an
// empty name, absent ownership keys) matches every row with that missing value too. So the candidates are
// checked against the identity the model really carries (UUID, name, ownership); when an index gave only
// wrong rows, a model with an ownership identity is looked up again by scanning its table.
func lookupShared(c client.Client, m model.Model) (model.Model, error) {
	info, err := modelInfo(c, m)
	if err != nil {
		return nil, err
	}
	table := c.Cache().Table(info.Metadata.TableName)
	if table == nil {
		return nil, fmt.Errorf("look up %s: table not monitored", describe(info))
	}
	rows, err := table.RowsByModels([]model.Model{m})
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", describe(info), err)
	}
	want := identityOf(info)
	var found []model.Model
	for _, r := range rows {
		if rInfo, err := modelInfo(c, r); err == nil && want.matches(identityOf(rInfo)) {
			found = append(found, r)
		}
	}
	if len(found) == 0 && len(rows) > 0 && want.owned {
		for _, r := range table.RowsShallow() {
			if rInfo, err := modelInfo(c, r); err == nil && want.matches(identityOf(rInfo)) {
				found = append(found, r)
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("look up %s: %d rows match, expected at most one", describe(info), len(found))
}

// identity is what identifies a row in a lookup: its UUID, its name, its ownership.
type identity struct {
	uuid, name string
	owned      bool
	id         ownership.ID
}

func identityOf(info *mapper.Info) identity {
	var x identity
	if u, err := info.FieldByColumn("_uuid"); err == nil {
		x.uuid, _ = u.(string)
	}
	if n, err := info.FieldByColumn("name"); err == nil {
		switch v := n.(type) {
		case string:
			x.name = v
		case *string:
			if v != nil {
				x.name = *v
			}
		}
	}
	if e, err := info.FieldByColumn("external_ids"); err == nil {
		ids, _ := e.(map[string]string)
		x.id, x.owned = ownership.Parse(ids)
	}
	return x
}

// matches reports whether a candidate row has the identity the lookup model asks for: the same UUID when it
// gives one, else the same name when it gives one, else the same ownership.
func (want identity) matches(got identity) bool {
	switch {
	case want.uuid != "" && !ovsdb.IsNamedUUID(want.uuid):
		return got.uuid == want.uuid
	case want.name != "":
		return got.name == want.name
	case want.owned:
		return got.owned && got.id == want.id
	}
	return true // schema indexes over other columns: the cache's answer stands
}

// CreateOrUpdate returns the operations that make the row identified by m equal to m: an insert when no such row
// exists, an update of exactly the columns that differ otherwise, and nothing when the row is already equal.
// fields (pointers to fields of m) limit which columns are compared and updated; without them every mutable
// column is. On return m's UUID is the existing row's UUID or a named UUID that later operations of the same
// transaction can refer to.
func CreateOrUpdate[T model.Model](c client.Client, m T, fields ...any) ([]ovsdb.Operation, error) {
	existing, err := lookupShared(c, m)
	if err != nil {
		return nil, err
	}
	info, err := modelInfo(c, m)
	if err != nil {
		return nil, err
	}
	if isNil(existing) {
		return createOps(c, info, m)
	}
	exInfo, err := modelInfo(c, existing)
	if err != nil {
		return nil, err
	}
	uuid, _ := exInfo.FieldByColumn("_uuid")
	if err := info.SetField("_uuid", uuid); err != nil {
		return nil, fmt.Errorf("set uuid of %s: %w", describe(info), err)
	}
	return updateOps(info, exInfo, uuid.(string), fields)
}

// Create returns an insert of m, giving it a named UUID when it has none.
func Create(c client.Client, m model.Model) ([]ovsdb.Operation, error) {
	info, err := modelInfo(c, m)
	if err != nil {
		return nil, err
	}
	return createOps(c, info, m)
}

func createOps(c client.Client, info *mapper.Info, m model.Model) ([]ovsdb.Operation, error) {
	if uuid, _ := info.FieldByColumn("_uuid"); uuid == "" {
		if err := info.SetField("_uuid", NewNamedUUID()); err != nil {
			return nil, fmt.Errorf("set named uuid of %s: %w", describe(info), err)
		}
	}
	ops, err := c.Create(m)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", describe(info), err)
	}
	return ops, nil
}

// updateOps compares desired with existing column by column and updates the ones that differ.
func updateOps(desired, existing *mapper.Info, uuid string, fields []any) ([]ovsdb.Operation, error) {
	schema := desired.Metadata.TableSchema
	columns, err := desired.ColumnsByPtr(fields...)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", describe(desired), err)
	}
	if len(fields) == 0 {
		columns = columns[:0]
		for name, col := range schema.Columns {
			if col.Mutable() && !statusColumns[desired.Metadata.TableName][name] {
				columns = append(columns, name)
			}
		}
	}
	row := ovsdb.Row{}
	for _, name := range columns {
		col := schema.Column(name)
		if col == nil || name == "_uuid" {
			continue
		}
		if !col.Mutable() {
			return nil, fmt.Errorf("update %s: column %s is immutable", describe(desired), name)
		}
		want, err := desired.FieldByColumn(name)
		if err != nil {
			continue // the model does not carry this column
		}
		have, _ := existing.FieldByColumn(name)
		if equalNative(want, have) {
			continue
		}
		v, err := ovsdb.NativeToOvs(col, want)
		if err != nil {
			return nil, fmt.Errorf("update %s column %s: %w", describe(desired), name, err)
		}
		row[name] = v
	}
	if len(row) == 0 {
		return nil, nil
	}
	return []ovsdb.Operation{{
		Op:    ovsdb.OperationUpdate,
		Table: desired.Metadata.TableName,
		Row:   row,
		Where: []ovsdb.Condition{whereUUID(uuid)},
	}}, nil
}

// statusColumns are written by OVN itself (ovn-northd, ovn-controller, ovs-vswitchd), never by kovn: an update
// without explicit fields leaves them alone, or every reconcile would undo what OVN reported.
var statusColumns = map[string]map[string]bool{
	"Logical_Switch_Port": {"up": true, "dynamic_addresses": true},
	"Logical_Router_Port": {"status": true},
	"Load_Balancer":       {"status": true},
	"NB_Global":           {"sb_cfg": true, "hv_cfg": true, "hv_cfg_timestamp": true, "nb_cfg_timestamp": true, "sb_cfg_timestamp": true},
	"Interface":           {"ofport": true, "mac_in_use": true, "status": true, "statistics": true, "link_state": true, "admin_state": true, "error": true},
	"Bridge":              {"datapath_id": true, "datapath_version": true, "status": true},
}

func whereUUID(uuid string) ovsdb.Condition {
	return ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: uuid})
}

// equalNative compares two native column values the way OVSDB does: sets are unordered, and an empty set, an
// empty map and an absent optional value are all "nothing".
func equalNative(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if !va.IsValid() || !vb.IsValid() {
		return va.IsValid() == vb.IsValid()
	}
	switch va.Kind() {
	case reflect.Slice:
		if va.Len() != vb.Len() {
			return false
		}
		return slices.Equal(sortedStrings(va), sortedStrings(vb))
	case reflect.Map:
		if va.Len() == 0 && vb.Len() == 0 {
			return true
		}
		return reflect.DeepEqual(a, b)
	case reflect.Pointer:
		if va.IsNil() || vb.IsNil() {
			return va.IsNil() == vb.IsNil()
		}
		return reflect.DeepEqual(va.Elem().Interface(), vb.Elem().Interface())
	default:
		return reflect.DeepEqual(a, b)
	}
}

func sortedStrings(v reflect.Value) []string {
	out := make([]string, v.Len())
	for i := range out {
		out[i] = fmt.Sprint(v.Index(i).Interface())
	}
	slices.Sort(out)
	return out
}

func modelInfo(c client.Client, m model.Model) (*mapper.Info, error) {
	if isNil(m) {
		return nil, fmt.Errorf("nil model")
	}
	info, err := c.Cache().DatabaseModel().NewModelInfo(m)
	if err != nil {
		return nil, fmt.Errorf("model %T: %w", m, err)
	}
	return info, nil
}

// describe names a row for error messages: table plus whatever identifies it best.
func describe(info *mapper.Info) string {
	table := info.Metadata.TableName
	if ids, err := info.FieldByColumn("external_ids"); err == nil {
		if m, ok := ids.(map[string]string); ok {
			if id, owned := ownership.Parse(m); owned {
				return fmt.Sprintf("%s of %s (%s)", table, id.Owner, id.Name)
			}
		}
	}
	if name, err := info.FieldByColumn("name"); err == nil {
		if s, ok := name.(string); ok && s != "" {
			return fmt.Sprintf("%s %q", table, s)
		}
	}
	if uuid, err := info.FieldByColumn("_uuid"); err == nil && uuid != "" {
		return fmt.Sprintf("%s %s", table, uuid)
	}
	return table
}
