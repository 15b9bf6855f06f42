package openflow

import (
	"encoding/binary"
	"fmt"
)

// OpenFlow 1.3 message types and constants (openflow-1.3 spec, section A).
const (
	version13 = 0x04

	typeHello            = 0
	typeError            = 1
	typeEchoRequest      = 2
	typeEchoReply        = 3
	typeFlowMod          = 14
	typeMultipartRequest = 18
	typeMultipartReply   = 19
	typeBarrierRequest   = 20
	typeBarrierReply     = 21

	cmdAdd          = 0
	cmdDeleteStrict = 4

	multipartFlow      = 1 // OFPMP_FLOW
	multipartReplyMore = 1 // OFPMPF_REPLY_MORE

	noBuffer  = 0xffffffff
	groupAny  = 0xffffffff
	tableAll  = 0xff
	headerLen = 8

	actionOutput       = 0
	actionSetField     = 25
	actionExperimenter = 0xffff
	instrApplyActions  = 4
	matchTypeOXM       = 1
	helloElemBitmap    = 1

	nxVendor      = 0x00002320 // Nicira
	nxastCt       = 35
	nxCtCommit    = 1
	nxCtNoRecirc  = 0xff
	ctActionLen   = 24
	maxMessageLen = 0xffff
)

// oxmField is an OXM (or NXM) match field: its class, field number and value size in bytes.
type oxmField struct {
	class uint16
	field uint8
	size  uint8
}

var (
	fieldInPort  = oxmField{0x8000, 0, 4}
	fieldEthType = oxmField{0x8000, 5, 2}
	fieldIPProto = oxmField{0x8000, 10, 1}
	fieldIPv4Src = oxmField{0x8000, 11, 4}
	fieldIPv4Dst = oxmField{0x8000, 12, 4}
	fieldTCPDst  = oxmField{0x8000, 14, 2}
	fieldUDPDst  = oxmField{0x8000, 16, 2}
	fieldCtState = oxmField{0x0001, 105, 4}
	fieldCtMark  = oxmField{0x0001, 107, 4}
)

// header returns the field's OXM header: class<<16 | field<<9 | hasmask<<8 | length.
func (f oxmField) header(masked bool) uint32 {
	h := uint32(f.class)<<16 | uint32(f.field)<<9
	if masked {
		return h | 1<<8 | 2*uint32(f.size) // the length counts value and mask
	}
	return h | uint32(f.size)
}

var be = binary.BigEndian

// appendUint appends the low n bytes of v, big-endian.
func appendUint(b []byte, v uint64, n uint8) []byte {
	for i := int(n) - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendOXM appends one TLV; a mask of all ones is sent as an exact match.
func appendOXM(b []byte, f oxmField, value, mask uint64) []byte {
	full := uint64(1)<<(8*f.size) - 1
	masked := mask&full != full
	b = be.AppendUint32(b, f.header(masked))
	b = appendUint(b, value, f.size)
	if masked {
		b = appendUint(b, mask, f.size)
	}
	return b
}

// pad8 zero-pads b so that the structure starting at start is a multiple of 8 bytes long.
func pad8(b []byte, start int) []byte {
	for (len(b)-start)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendHeader starts a message; finish fills in its length.
func appendHeader(b []byte, typ uint8, xid uint32) []byte {
	b = append(b, version13, typ, 0, 0)
	return be.AppendUint32(b, xid)
}

func finish(b []byte) ([]byte, error) {
	if len(b) > maxMessageLen {
		return nil, fmt.Errorf("message of %d bytes is longer than OpenFlow allows", len(b))
	}
	be.PutUint16(b[2:], uint16(len(b)))
	return b, nil
}

// appendMatch appends an ofp_match (OXM type) for a normalized Match, padded to 8 bytes.
func appendMatch(b []byte, m Match) []byte {
	start := len(b)
	b = append(b, 0, matchTypeOXM, 0, 0)
	if m.InPort != 0 {
		b = appendOXM(b, fieldInPort, uint64(m.InPort), ^uint64(0))
	}
	if m.EthType != 0 {
		b = appendOXM(b, fieldEthType, uint64(m.EthType), ^uint64(0))
	}
	if m.IPProto != 0 {
		b = appendOXM(b, fieldIPProto, uint64(m.IPProto), ^uint64(0))
	}
	if m.IPv4Src.IsValid() {
		b = appendOXM(b, fieldIPv4Src, uint64(be.Uint32(m.IPv4Src.Addr().AsSlice())), prefixMask(m.IPv4Src.Bits()))
	}
	if m.IPv4Dst.IsValid() {
		b = appendOXM(b, fieldIPv4Dst, uint64(be.Uint32(m.IPv4Dst.Addr().AsSlice())), prefixMask(m.IPv4Dst.Bits()))
	}
	if m.TpDst != 0 {
		f := fieldTCPDst
		if m.IPProto == IPProtoUDP {
			f = fieldUDPDst
		}
		b = appendOXM(b, f, uint64(m.TpDst), ^uint64(0))
	}
	if m.CtStateMask != 0 {
		b = appendOXM(b, fieldCtState, uint64(m.CtState), uint64(m.CtStateMask))
	}
	if m.CtMarkMask != 0 {
		b = appendOXM(b, fieldCtMark, uint64(m.CtMark), uint64(m.CtMarkMask))
	}
	be.PutUint16(b[start+2:], uint16(len(b)-start))
	return pad8(b, start)
}

// prefixMask is an IPv4 netmask of bits ones.
func prefixMask(bits int) uint64 { return uint64(^uint32(0) << (32 - bits)) }

func (o output) appendAction(b []byte) ([]byte, error) {
	if o.port == 0 {
		return nil, fmt.Errorf("port 0 is not an OpenFlow port")
	}
	b = be.AppendUint16(b, actionOutput)
	b = be.AppendUint16(b, 16)
	b = be.AppendUint32(b, uint32(o.port))
	b = be.AppendUint16(b, 0xffff) // max_len: OFPCML_NO_BUFFER
	return append(b, 0, 0, 0, 0, 0, 0), nil
}

// appendAction encodes struct nx_action_conntrack with an immediate zone, followed by its nested actions.
func (c Ct) appendAction(b []byte) ([]byte, error) {
	table := uint8(nxCtNoRecirc)
	if c.Table != nil {
		if *c.Table == nxCtNoRecirc {
			return nil, fmt.Errorf("ct: table 255 means no recirculation, leave Table nil instead")
		}
		table = *c.Table
	}
	var flags uint16
	if c.Commit {
		flags |= nxCtCommit
	}
	start := len(b)
	b = be.AppendUint16(b, actionExperimenter)
	b = be.AppendUint16(b, 0) // length, below
	b = be.AppendUint32(b, nxVendor)
	b = be.AppendUint16(b, nxastCt)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint32(b, 0) // zone_src: none, the zone is immediate
	b = be.AppendUint16(b, c.Zone)
	b = append(b, table, 0, 0, 0)
	b = be.AppendUint16(b, 0) // alg
	if c.SetMark != nil {
		b = appendSetField(b, fieldCtMark, uint64(*c.SetMark))
	}
	be.PutUint16(b[start+2:], uint16(len(b)-start))
	return b, nil
}

// appendSetField appends OFPAT_SET_FIELD with an exact OXM TLV, padded to 8 bytes.
func appendSetField(b []byte, f oxmField, value uint64) []byte {
	start := len(b)
	b = be.AppendUint16(b, actionSetField)
	b = be.AppendUint16(b, 0)
	b = appendOXM(b, f, value, ^uint64(0))
	b = pad8(b, start)
	be.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

// appendInstructions appends one APPLY_ACTIONS instruction, or nothing when there are no actions.
func appendInstructions(b []byte, actions []Action) ([]byte, error) {
	if len(actions) == 0 {
		return b, nil
	}
	start := len(b)
	b = be.AppendUint16(b, instrApplyActions)
	b = append(b, 0, 0, 0, 0, 0, 0)
	for i, a := range actions {
		var err error
		if a == nil {
			return nil, fmt.Errorf("action %d is nil", i)
		}
		if b, err = a.appendAction(b); err != nil {
			return nil, fmt.Errorf("action %d (%s): %w", i, a, err)
		}
	}
	be.PutUint16(b[start+2:], uint16(len(b)-start))
	return b, nil
}

// flowMod is an ofp_flow_mod with its match and instructions already encoded.
type flowMod struct {
	command            uint8
	cookie, cookieMask uint64
	table              uint8
	priority           uint16
	match              []byte
	instructions       []byte
}

func (m flowMod) marshal(xid uint32) ([]byte, error) {
	b := appendHeader(make([]byte, 0, 48+len(m.match)+len(m.instructions)), typeFlowMod, xid)
	b = be.AppendUint64(b, m.cookie)
	b = be.AppendUint64(b, m.cookieMask)
	b = append(b, m.table, m.command)
	b = be.AppendUint16(b, 0) // idle_timeout
	b = be.AppendUint16(b, 0) // hard_timeout
	b = be.AppendUint16(b, m.priority)
	b = be.AppendUint32(b, noBuffer)
	b = be.AppendUint32(b, uint32(portAny))
	b = be.AppendUint32(b, groupAny)
	b = be.AppendUint16(b, 0) // flags
	b = append(b, 0, 0)
	b = append(b, m.match...)
	b = append(b, m.instructions...)
	return finish(b)
}

// addFlowMod encodes f as an OFPFC_ADD flow mod (ADD overwrites a flow with the same table, priority and
// match). It also returns f's normalized match.
func addFlowMod(f Flow) (flowMod, Match, error) {
	m, err := f.Match.normalize()
	if err != nil {
		return flowMod{}, m, err
	}
	instr, err := appendInstructions(nil, f.Actions)
	if err != nil {
		return flowMod{}, m, err
	}
	return flowMod{command: cmdAdd, cookie: f.Cookie, table: f.Table, priority: f.Priority,
		match: appendMatch(nil, m), instructions: instr}, m, nil
}

// flowStatsRequest asks for every flow, in all tables, whose cookie is exactly cookie.
func flowStatsRequest(xid uint32, cookie uint64) ([]byte, error) {
	b := appendHeader(nil, typeMultipartRequest, xid)
	b = be.AppendUint16(b, multipartFlow)
	b = append(b, 0, 0, 0, 0, 0, 0) // flags, pad
	b = append(b, tableAll, 0, 0, 0)
	b = be.AppendUint32(b, uint32(portAny))
	b = be.AppendUint32(b, groupAny)
	b = append(b, 0, 0, 0, 0)
	b = be.AppendUint64(b, cookie)
	b = be.AppendUint64(b, ^uint64(0))
	b = appendMatch(b, Match{})
	return finish(b)
}

// helloMessage offers OpenFlow 1.3 only, with a version bitmap element.
func helloMessage(xid uint32) ([]byte, error) {
	b := appendHeader(nil, typeHello, xid)
	b = be.AppendUint16(b, helloElemBitmap)
	b = be.AppendUint16(b, 8)
	b = be.AppendUint32(b, 1<<version13)
	return finish(b)
}

// simpleMessage is a message with a plain body (barrier request, echo reply).
func simpleMessage(typ uint8, xid uint32, body []byte) ([]byte, error) {
	return finish(append(appendHeader(nil, typ, xid), body...))
}
