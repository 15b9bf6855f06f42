package nbops

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Delete returns the operations that delete the rows the models identify. Rows that do not exist are skipped, so
// deleting twice is harmless. Strong references to a deleted row from other rows (a switch's ports, a port
// group's ACLs) are removed in the same operations, so that deleting a child row never violates referential
// integrity and never leaves a dangling reference.
func Delete[T model.Model](c client.Client, models ...T) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	for _, m := range models {
		existing, err := lookupShared(c, m)
		if err != nil {
			return nil, err
		}
		if existing == nil {
			continue
		}
		info, err := modelInfo(c, existing)
		if err != nil {
			return nil, err
		}
		uuid, _ := info.FieldByColumn("_uuid")
		rowOps, err := DeleteRow(c, info.Metadata.TableName, uuid.(string))
		if err != nil {
			return nil, err
		}
		ops = append(ops, rowOps...)
	}
	return ops, nil
}

// DeleteRow returns the operations that delete one row by table and UUID, with the strong references to it.
func DeleteRow(c client.Client, table, uuid string) ([]ovsdb.Operation, error) {
	unref, err := unreferenceOps(c, table, []string{uuid})
	if err != nil {
		return nil, err
	}
	return append(unref, ovsdb.Operation{
		Op:    ovsdb.OperationDelete,
		Table: table,
		Where: []ovsdb.Condition{whereUUID(uuid)},
	}), nil
}

// unreferenceOps finds the cached rows that hold strong references to any of uuids (all in table target) and
// returns mutations removing those references.
func unreferenceOps(c client.Client, target string, uuids []string) ([]ovsdb.Operation, error) {
	schema := c.Schema()
	var ops []ovsdb.Operation
	for _, ref := range strongRefsTo(schema, target) {
		rows := c.Cache().Table(ref.table)
		if rows == nil {
			continue
		}
		for parentUUID, parent := range rows.RowsShallow() {
			info, err := c.Cache().DatabaseModel().NewModelInfo(parent)
			if err != nil {
				return nil, fmt.Errorf("unreference %s from %s: %w", target, ref.table, err)
			}
			v, err := info.FieldByColumn(ref.column)
			if err != nil {
				continue
			}
			var drop []ovsdb.UUID
			for _, held := range uuidsIn(v) {
				if slices.Contains(uuids, held) {
					drop = append(drop, ovsdb.UUID{GoUUID: held})
				}
			}
			if len(drop) == 0 {
				continue
			}
			set, err := ovsdb.NewOvsSet(drop)
			if err != nil {
				return nil, err
			}
			ops = append(ops, ovsdb.Operation{
				Op:        ovsdb.OperationMutate,
				Table:     ref.table,
				Where:     []ovsdb.Condition{whereUUID(parentUUID)},
				Mutations: []ovsdb.Mutation{*ovsdb.NewMutation(ref.column, ovsdb.MutateOperationDelete, set)},
			})
		}
	}
	return ops, nil
}

type refColumn struct{ table, column string }

// strongRefsTo lists the set columns in the schema that hold strong references to rows of target.
func strongRefsTo(schema ovsdb.DatabaseSchema, target string) []refColumn {
	var refs []refColumn
	for tname, t := range schema.Tables {
		for cname, col := range t.Columns {
			if col.Type != ovsdb.TypeSet && col.Type != ovsdb.TypeUUID {
				continue
			}
			if col.TypeObj == nil || col.TypeObj.Key == nil {
				continue
			}
			refTable, err := col.TypeObj.Key.RefTable()
			if err != nil || refTable != target {
				continue
			}
			if rt, _ := col.TypeObj.Key.RefType(); rt != ovsdb.Strong {
				continue
			}
			if col.Type == ovsdb.TypeUUID {
				// A mandatory single reference cannot be removed by mutation: deleting its target
				// must fail, and the server says so.
				continue
			}
			refs = append(refs, refColumn{table: tname, column: cname})
		}
	}
	return refs
}

func uuidsIn(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case *string:
		if x != nil {
			return []string{*x}
		}
	case string:
		return []string{x}
	}
	return nil
}

func isNil(m model.Model) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
