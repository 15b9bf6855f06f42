package nbops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Result is what a committed transaction created: the real UUID of every row inserted under a named UUID.
type Result struct {
	UUIDs map[string]string
}

// Transact commits ops as one transaction. Nothing is sent when ops is empty. When the server refuses the
// transaction (a constraint or referential integrity violation, a failed wait), nothing is changed and the error
// names the failing operation, its table and the server's details.
func Transact(ctx context.Context, c client.Client, ops []ovsdb.Operation) (Result, error) {
	res := Result{UUIDs: map[string]string{}}
	if len(ops) == 0 {
		return res, nil
	}
	results, err := c.Transact(ctx, ops...)
	if err != nil {
		return res, fmt.Errorf("transact %d operations: %w", len(ops), err)
	}
	if opErrs, err := ovsdb.CheckOperationResults(results, ops); err != nil {
		return res, &TxnError{Ops: len(ops), Failed: opErrs, Err: err, results: results}
	}
	for i, op := range ops {
		if op.Op == ovsdb.OperationInsert && op.UUIDName != "" && i < len(results) {
			res.UUIDs[op.UUIDName] = results[i].UUID.GoUUID
		}
	}
	return res, nil
}

// TxnError is a transaction the server refused. Nothing of it was committed.
type TxnError struct {
	Ops     int
	Failed  []ovsdb.OperationError
	Err     error
	results []ovsdb.OperationResult
}

func (e *TxnError) Error() string {
	var parts []string
	for _, f := range e.Failed {
		op := f.Operation()
		if op == nil {
			parts = append(parts, f.Error())
			continue
		}
		parts = append(parts, fmt.Sprintf("%s on %s: %s", op.Op, op.Table, f.Error()))
	}
	if len(parts) == 0 {
		// The commit itself failed (e.g. referential integrity is checked at commit time): the extra result.
		for _, r := range e.results {
			if r.Error != "" {
				parts = append(parts, strings.TrimSpace(r.Error+": "+r.Details))
			}
		}
	}
	return fmt.Sprintf("transaction of %d operations refused, nothing changed: %s", e.Ops, strings.Join(parts, "; "))
}

func (e *TxnError) Unwrap() error { return e.Err }

// IsReferentialIntegrity reports whether err is a referential integrity violation refused by the server.
func IsReferentialIntegrity(err error) bool {
	var te *TxnError
	if !errors.As(err, &te) {
		return false
	}
	for _, r := range te.results {
		if r.Error == "referential integrity violation" {
			return true
		}
	}
	return false
}

// IsConstraintViolation reports whether err is a constraint violation (a duplicate index value, a value out of
// range) refused by the server.
func IsConstraintViolation(err error) bool {
	var te *TxnError
	if !errors.As(err, &te) {
		return false
	}
	for _, r := range te.results {
		if r.Error == "constraint violation" {
			return true
		}
	}
	return false
}
