// Package ovsdbmodels holds the OVSDB schemas kovn is built against and generates the typed libovsdb
// models for them: nbdb (OVN Northbound), sbdb (OVN Southbound) and vswitchd (Open_vSwitch).
//
// The schemas in schemas/ are copied from Debian 12's packages (OVN 23.03, OVS 3.1). Regenerate the models
// with `make models` (or `go generate ./ovsdb-models/`) after replacing a schema.
package ovsdbmodels

//go:generate go tool modelgen -extended -p nbdb -o nbdb schemas/ovn-nb.ovsschema
//go:generate go tool modelgen -extended -p sbdb -o sbdb schemas/ovn-sb.ovsschema
//go:generate go tool modelgen -extended -p vswitchd -o vswitchd schemas/vswitch.ovsschema

import _ "embed"

// The schemas the models were generated from, for tools that create databases (test beds, the sandbox).
var (
	//go:embed schemas/ovn-nb.ovsschema
	NBSchema []byte
	//go:embed schemas/ovn-sb.ovsschema
	SBSchema []byte
	//go:embed schemas/vswitch.ovsschema
	OVSSchema []byte
)
