package nbops

import (
	"fmt"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
)

// OwnedRow is a cached row that kovn owns.
type OwnedRow struct {
	Table string
	UUID  string
	ID    ownership.ID
	Model model.Model // a copy; callers may keep and change it
}

// ListOwned returns every cached row, in every table with external_ids, that carries kovn's ownership keys and
// for which keep (when not nil) returns true. Rows come sorted by table, then owner, then name.
func ListOwned(c client.Client, keep func(ownership.ID) bool) ([]OwnedRow, error) {
	var out []OwnedRow
	dbModel := c.Cache().DatabaseModel()
	for table, ts := range c.Schema().Tables {
		if ts.Column("external_ids") == nil {
			continue
		}
		rows := c.Cache().Table(table)
		if rows == nil {
			continue
		}
		for uuid, row := range rows.RowsShallow() {
			info, err := dbModel.NewModelInfo(row)
			if err != nil {
				return nil, fmt.Errorf("list owned rows of %s: %w", table, err)
			}
			v, err := info.FieldByColumn("external_ids")
			if err != nil {
				continue
			}
			ids, _ := v.(map[string]string)
			id, ok := ownership.Parse(ids)
			if !ok || (keep != nil && !keep(id)) {
				continue
			}
			out = append(out, OwnedRow{Table: table, UUID: uuid, ID: id, Model: model.Clone(row)})
		}
	}
	slices.SortFunc(out, func(a, b OwnedRow) int {
		for _, d := range [][2]string{{a.Table, b.Table}, {string(a.ID.Kind), string(b.ID.Kind)}, {a.ID.Key, b.ID.Key}, {a.ID.Name, b.ID.Name}, {a.UUID, b.UUID}} {
			if d[0] != d[1] {
				if d[0] < d[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return out, nil
}

// FindByOwner returns every row, in every table, that owner owns.
func FindByOwner(c client.Client, owner ownership.Owner) ([]OwnedRow, error) {
	return ListOwned(c, func(id ownership.ID) bool { return id.Owner == owner })
}

// DeleteByOwner returns the operations that delete every row owner owns, with the references to them.
func DeleteByOwner(c client.Client, owner ownership.Owner) ([]ovsdb.Operation, error) {
	rows, err := FindByOwner(c, owner)
	if err != nil {
		return nil, err
	}
	ops, err := DeleteRows(c, rows)
	if err != nil {
		return nil, fmt.Errorf("delete rows of %s: %w", owner, err)
	}
	return ops, nil
}

// DeleteRows returns the operations that delete the given rows, with the strong references to them.
func DeleteRows(c client.Client, rows []OwnedRow) ([]ovsdb.Operation, error) {
	byTable := map[string][]string{}
	var tables []string
	for _, r := range rows {
		if _, seen := byTable[r.Table]; !seen {
			tables = append(tables, r.Table)
		}
		byTable[r.Table] = append(byTable[r.Table], r.UUID)
	}
	var ops []ovsdb.Operation
	for _, table := range tables {
		uuids := byTable[table]
		unref, err := unreferenceOps(c, table, uuids)
		if err != nil {
			return nil, err
		}
		ops = append(ops, unref...)
		for _, u := range uuids {
			ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationDelete, Table: table, Where: []ovsdb.Condition{whereUUID(u)}})
		}
	}
	return ops, nil
}
