package openflow

import "fmt"

// Error is an OFPT_ERROR message the switch sent in answer to one of our requests.
type Error struct {
	Type, Code uint16
	// Experimenter is set for experimenter errors (Type 0xffff), whose Code is the exp_type.
	Experimenter uint32
	// Xid is the failed request's transaction id; Request describes it (a flow, "hello", ...).
	Xid     uint32
	Request string
}

func (e *Error) Error() string {
	return fmt.Sprintf("switch rejected %s (xid %d): OpenFlow error %s", e.Request, e.Xid, e.Name())
}

// Name renders the error type and code with their OpenFlow 1.3 names where known:
// "OFPET_BAD_ACTION/OFPBAC_MATCH_INCONSISTENT (type 2, code 10)".
func (e *Error) Name() string {
	if e.Type == 0xffff {
		return fmt.Sprintf("OFPET_EXPERIMENTER (experimenter 0x%08x, type %d)", e.Experimenter, e.Code)
	}
	typ, codes := fmt.Sprintf("OFPET_%d", e.Type), []string(nil)
	if int(e.Type) < len(errorTypes) {
		typ, codes = "OFPET_"+errorTypes[e.Type].name, errorTypes[e.Type].codes
	}
	code := fmt.Sprintf("%d", e.Code)
	if int(e.Code) < len(codes) {
		code = codes[e.Code]
	}
	return fmt.Sprintf("%s/%s (type %d, code %d)", typ, code, e.Type, e.Code)
}

// parseError decodes an OFPT_ERROR body: type, code, then for experimenter errors the experimenter id.
func parseError(xid uint32, body []byte, request string) *Error {
	e := &Error{Xid: xid, Request: request}
	if len(body) >= 4 {
		e.Type, e.Code = be.Uint16(body), be.Uint16(body[2:])
	}
	if e.Type == 0xffff && len(body) >= 8 {
		e.Experimenter = be.Uint32(body[4:])
	}
	return e
}

// errorTypes names the OpenFlow 1.3 error types (by number) and their codes.
var errorTypes = []struct {
	name  string
	codes []string
}{
	{"HELLO_FAILED", []string{"OFPHFC_INCOMPATIBLE", "OFPHFC_EPERM"}},
	{"BAD_REQUEST", []string{"OFPBRC_BAD_VERSION", "OFPBRC_BAD_TYPE", "OFPBRC_BAD_MULTIPART",
		"OFPBRC_BAD_EXPERIMENTER", "OFPBRC_BAD_EXP_TYPE", "OFPBRC_EPERM", "OFPBRC_BAD_LEN",
		"OFPBRC_BUFFER_EMPTY", "OFPBRC_BUFFER_UNKNOWN", "OFPBRC_BAD_TABLE_ID", "OFPBRC_IS_SLAVE",
		"OFPBRC_BAD_PORT", "OFPBRC_BAD_PACKET", "OFPBRC_MULTIPART_BUFFER_OVERFLOW"}},
	{"BAD_ACTION", []string{"OFPBAC_BAD_TYPE", "OFPBAC_BAD_LEN", "OFPBAC_BAD_EXPERIMENTER",
		"OFPBAC_BAD_EXP_TYPE", "OFPBAC_BAD_OUT_PORT", "OFPBAC_BAD_ARGUMENT", "OFPBAC_EPERM",
		"OFPBAC_TOO_MANY", "OFPBAC_BAD_QUEUE", "OFPBAC_BAD_OUT_GROUP", "OFPBAC_MATCH_INCONSISTENT",
		"OFPBAC_UNSUPPORTED_ORDER", "OFPBAC_BAD_TAG", "OFPBAC_BAD_SET_TYPE", "OFPBAC_BAD_SET_LEN",
		"OFPBAC_BAD_SET_ARGUMENT"}},
	{"BAD_INSTRUCTION", []string{"OFPBIC_UNKNOWN_INST", "OFPBIC_UNSUP_INST", "OFPBIC_BAD_TABLE_ID",
		"OFPBIC_UNSUP_METADATA", "OFPBIC_UNSUP_METADATA_MASK", "OFPBIC_BAD_EXPERIMENTER",
		"OFPBIC_BAD_EXP_TYPE", "OFPBIC_BAD_LEN", "OFPBIC_EPERM"}},
	{"BAD_MATCH", []string{"OFPBMC_BAD_TYPE", "OFPBMC_BAD_LEN", "OFPBMC_BAD_TAG",
		"OFPBMC_BAD_DL_ADDR_MASK", "OFPBMC_BAD_NW_ADDR_MASK", "OFPBMC_BAD_WILDCARDS", "OFPBMC_BAD_FIELD",
		"OFPBMC_BAD_VALUE", "OFPBMC_BAD_MASK", "OFPBMC_BAD_PREREQ", "OFPBMC_DUP_FIELD", "OFPBMC_EPERM"}},
	{"FLOW_MOD_FAILED", []string{"OFPFMFC_UNKNOWN", "OFPFMFC_TABLE_FULL", "OFPFMFC_BAD_TABLE_ID",
		"OFPFMFC_OVERLAP", "OFPFMFC_EPERM", "OFPFMFC_BAD_TIMEOUT", "OFPFMFC_BAD_COMMAND", "OFPFMFC_BAD_FLAGS"}},
	{"GROUP_MOD_FAILED", nil},
	{"PORT_MOD_FAILED", nil},
	{"TABLE_MOD_FAILED", nil},
	{"QUEUE_OP_FAILED", nil},
	{"SWITCH_CONFIG_FAILED", nil},
	{"ROLE_REQUEST_FAILED", nil},
	{"METER_MOD_FAILED", nil},
	{"TABLE_FEATURES_FAILED", nil},
}
