package nbops

import (
	"fmt"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/mapper"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// InsertToSet returns a mutation that adds values to a set or map column of the row m identifies, without
// reading or rewriting the rest of the column: the way to add a port to a switch, an address to an address set
// or a port to a port group when other writers may be changing the same row. field points into m; values has
// the field's type ([]string for a set of strings or UUIDs, map[string]string for a map). The row must exist,
// or be inserted earlier in the same transaction (m then carries its named UUID).
func InsertToSet[T model.Model](c client.Client, m T, field any, values any) ([]ovsdb.Operation, error) {
	return mutateSet(c, m, field, ovsdb.MutateOperationInsert, values)
}

// RemoveFromSet returns a mutation that removes values from a set column (or keys/pairs from a map column) of
// the row m identifies. Removing a value that is not there is harmless.
func RemoveFromSet[T model.Model](c client.Client, m T, field any, values any) ([]ovsdb.Operation, error) {
	return mutateSet(c, m, field, ovsdb.MutateOperationDelete, values)
}

func mutateSet[T model.Model](c client.Client, m T, field any, op ovsdb.Mutator, values any) ([]ovsdb.Operation, error) {
	info, err := modelInfo(c, m)
	if err != nil {
		return nil, err
	}
	col, err := info.ColumnByPtr(field)
	if err != nil {
		return nil, fmt.Errorf("mutate %s: %w", describe(info), err)
	}
	var where []ovsdb.Condition
	if u, _ := info.FieldByColumn("_uuid"); u.(string) != "" && !ovsdb.IsNamedUUID(u.(string)) {
		// Identified by UUID: the cache need only say it holds the row, without copying it.
		if t := c.Cache().Table(info.Metadata.TableName); t == nil || !t.HasRow(u.(string)) {
			return nil, fmt.Errorf("mutate %s column %s: %w", describe(info), col, client.ErrNotFound)
		}
		return mutation(c, info, col, op, values, []ovsdb.Condition{whereUUID(u.(string))})
	}
	existing, err := lookupShared(c, m)
	if err != nil {
		return nil, err
	}
	if !isNil(existing) {
		exInfo, err := modelInfo(c, existing)
		if err != nil {
			return nil, err
		}
		u, _ := exInfo.FieldByColumn("_uuid")
		where = []ovsdb.Condition{whereUUID(u.(string))}
	} else if u, _ := info.FieldByColumn("_uuid"); ovsdb.IsNamedUUID(u.(string)) {
		// Not in the database yet: inserted earlier in the same transaction.
		where = []ovsdb.Condition{whereUUID(u.(string))}
	} else {
		return nil, fmt.Errorf("mutate %s column %s: %w", describe(info), col, client.ErrNotFound)
	}
	return mutation(c, info, col, op, values, where)
}

func mutation(c client.Client, info *mapper.Info, col string, op ovsdb.Mutator, values any, where []ovsdb.Condition) ([]ovsdb.Operation, error) {
	mutation, err := c.Cache().Mapper().NewMutation(info, col, op, values)
	if err != nil {
		return nil, fmt.Errorf("mutate %s column %s: %w", describe(info), col, err)
	}
	return []ovsdb.Operation{{
		Op:        ovsdb.OperationMutate,
		Table:     info.Metadata.TableName,
		Where:     where,
		Mutations: []ovsdb.Mutation{*mutation},
	}}, nil
}

// EnsureInSet is InsertToSet for the values the cached row does not hold yet; it returns nothing when the row
// holds them all, so that a reconcile of an unchanged object writes nothing. values is a []string (a set of
// strings or UUIDs). A row inserted earlier in the same transaction (m carries its named UUID) gets them all.
func EnsureInSet[T model.Model](c client.Client, m T, field any, values []string) ([]ovsdb.Operation, error) {
	held, found, err := cachedSet(c, m, field)
	if err != nil {
		return nil, err
	}
	missing := values
	if found {
		missing = nil
		for _, v := range values {
			if !slices.Contains(held, v) {
				missing = append(missing, v)
			}
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	return InsertToSet(c, m, field, missing)
}

// EnsureNotInSet is RemoveFromSet for the values the cached row holds; nothing when it holds none of them or
// does not exist.
func EnsureNotInSet[T model.Model](c client.Client, m T, field any, values []string) ([]ovsdb.Operation, error) {
	held, found, err := cachedSet(c, m, field)
	if err != nil || !found {
		return nil, err
	}
	var present []string
	for _, v := range values {
		if slices.Contains(held, v) {
			present = append(present, v)
		}
	}
	if len(present) == 0 {
		return nil, nil
	}
	return RemoveFromSet(c, m, field, present)
}

// cachedSet returns the values of a set column of the cached row m identifies, without copying them (a
// reconcile checks one value against an address set of thousands).
func cachedSet[T model.Model](c client.Client, m T, field any) ([]string, bool, error) {
	info, err := modelInfo(c, m)
	if err != nil {
		return nil, false, err
	}
	col, err := info.ColumnByPtr(field)
	if err != nil {
		return nil, false, fmt.Errorf("set column of %s: %w", describe(info), err)
	}
	existing, err := lookupShared(c, m)
	if err != nil || existing == nil {
		return nil, false, err
	}
	exInfo, err := modelInfo(c, existing)
	if err != nil {
		return nil, false, err
	}
	v, err := exInfo.FieldByColumn(col)
	if err != nil {
		return nil, false, err
	}
	// m now names the row by UUID, so the mutation that usually follows need not look it up again.
	if u, err := exInfo.FieldByColumn("_uuid"); err == nil {
		if err := info.SetField("_uuid", u); err != nil {
			return nil, false, err
		}
	}
	return uuidsIn(v), true, nil
}
