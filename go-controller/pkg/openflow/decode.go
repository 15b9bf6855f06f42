package openflow

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
)

// installed is a flow as read back from the switch.
type installed struct {
	flow Flow
	// match is the ofp_match exactly as the switch sent it (padded), for a DELETE_STRICT of this very flow.
	match []byte
	// exact says the match held only fields Match represents, so flow.Match is the whole match.
	exact bool
}

var errShort = errors.New("truncated")

// parseFlowStats decodes the ofp_flow_stats entries of one OFPMP_FLOW reply body (after its multipart header).
func parseFlowStats(b []byte) ([]installed, error) {
	var out []installed
	for len(b) > 0 {
		if len(b) < 56 {
			return nil, fmt.Errorf("flow stats entry: %w", errShort)
		}
		n := int(be.Uint16(b))
		if n < 56 || n > len(b) {
			return nil, fmt.Errorf("flow stats entry length %d of %d bytes left", n, len(b))
		}
		in, err := parseFlowStatsEntry(b[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, in)
		b = b[n:]
	}
	return out, nil
}

// parseFlowStatsEntry decodes one ofp_flow_stats: 48 fixed bytes, the match, then instructions.
func parseFlowStatsEntry(b []byte) (installed, error) {
	in := installed{flow: Flow{Table: b[2], Priority: be.Uint16(b[12:]), Cookie: be.Uint64(b[24:])}}
	m, exact, n, err := parseMatch(b[48:])
	if err != nil {
		return in, fmt.Errorf("flow stats entry (table %d, priority %d): %w", in.flow.Table, in.flow.Priority, err)
	}
	in.flow.Match, in.exact, in.match = m, exact, b[48:48+n]
	if in.flow.Actions, err = parseInstructions(b[48+n:]); err != nil {
		return in, fmt.Errorf("flow stats entry (table %d, priority %d): %w", in.flow.Table, in.flow.Priority, err)
	}
	return in, nil
}

// parseMatch decodes an OXM ofp_match; n is its padded length. Fields Match cannot hold make exact false.
func parseMatch(b []byte) (m Match, exact bool, n int, err error) {
	if len(b) < 4 {
		return m, false, 0, fmt.Errorf("match: %w", errShort)
	}
	typ, length := be.Uint16(b), int(be.Uint16(b[2:]))
	n = (length + 7) / 8 * 8
	if typ != matchTypeOXM || length < 4 || n > len(b) {
		return m, false, 0, fmt.Errorf("match of type %d, length %d in %d bytes", typ, length, len(b))
	}
	exact = true
	for tlvs := b[4:length]; len(tlvs) > 0; {
		if len(tlvs) < 4 {
			return m, false, 0, fmt.Errorf("match field: %w", errShort)
		}
		h := be.Uint32(tlvs)
		size := int(h & 0xff)
		if 4+size > len(tlvs) {
			return m, false, 0, fmt.Errorf("match field 0x%08x: %w", h, errShort)
		}
		if !m.setField(h, tlvs[4:4+size]) {
			exact = false
		}
		tlvs = tlvs[4+size:]
	}
	return m, exact, n, nil
}

// setField stores one OXM TLV's value into m; false when Match has no place for it.
func (m *Match) setField(h uint32, payload []byte) bool {
	class, field, masked := uint16(h>>16), uint8(h>>9&0x7f), h&0x100 != 0
	f, ok := knownField(class, field)
	if !ok || len(payload) != int(f.size)*(1+b2i(masked)) {
		return false
	}
	value, mask := uint64(0), uint64(1)<<(8*f.size)-1
	for _, c := range payload[:f.size] {
		value = value<<8 | uint64(c)
	}
	if masked {
		mask = 0
		for _, c := range payload[f.size:] {
			mask = mask<<8 | uint64(c)
		}
	}
	return m.set(f, value, mask, masked)
}

func (m *Match) set(f oxmField, value, mask uint64, masked bool) bool {
	switch f {
	case fieldInPort, fieldEthType, fieldIPProto, fieldTCPDst, fieldUDPDst:
		if masked {
			return false
		}
		m.setExact(f, value)
	case fieldIPv4Src, fieldIPv4Dst:
		p, ok := prefixFrom(uint32(value), uint32(mask))
		if f == fieldIPv4Src {
			m.IPv4Src = p
		} else {
			m.IPv4Dst = p
		}
		return ok
	case fieldCtState:
		m.CtState, m.CtStateMask = CtState(value&mask), CtState(mask)
	case fieldCtMark:
		m.CtMark, m.CtMarkMask = uint32(value&mask), uint32(mask)
	}
	return true
}

func (m *Match) setExact(f oxmField, value uint64) {
	switch f {
	case fieldInPort:
		m.InPort = Port(value)
	case fieldEthType:
		m.EthType = uint16(value)
	case fieldIPProto:
		m.IPProto = uint8(value)
	default: // TCP or UDP destination port
		m.TpDst = uint16(value)
	}
}

func knownField(class uint16, field uint8) (oxmField, bool) {
	for _, f := range []oxmField{fieldInPort, fieldEthType, fieldIPProto, fieldIPv4Src, fieldIPv4Dst,
		fieldTCPDst, fieldUDPDst, fieldCtState, fieldCtMark} {
		if f.class == class && f.field == field {
			return f, true
		}
	}
	return oxmField{}, false
}

// prefixFrom turns an address and netmask into a prefix; false when the mask is not a netmask.
func prefixFrom(addr, mask uint32) (netip.Prefix, bool) {
	n := bits.LeadingZeros32(^mask)
	if mask != prefixMaskBits(n) {
		return netip.Prefix{}, false
	}
	if n == 0 {
		return netip.Prefix{}, true
	}
	a := netip.AddrFrom4([4]byte{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)})
	return netip.PrefixFrom(a, n).Masked(), true
}

func prefixMaskBits(n int) uint32 {
	if n == 0 {
		return 0
	}
	return uint32(prefixMask(n))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseInstructions decodes APPLY_ACTIONS instructions; any other instruction becomes an opaque action.
func parseInstructions(b []byte) ([]Action, error) {
	var out []Action
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("instruction: %w", errShort)
		}
		typ, n := be.Uint16(b), int(be.Uint16(b[2:]))
		if n < 8 || n > len(b) {
			return nil, fmt.Errorf("instruction %d of length %d in %d bytes", typ, n, len(b))
		}
		if typ != instrApplyActions {
			out = append(out, opaque{fmt.Sprintf("instruction(type=%d)", typ)})
		} else {
			actions, err := parseActions(b[8:n])
			if err != nil {
				return nil, err
			}
			out = append(out, actions...)
		}
		b = b[n:]
	}
	return out, nil
}

// parseActions decodes output and ct actions; others become opaque actions.
func parseActions(b []byte) ([]Action, error) {
	var out []Action
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("action: %w", errShort)
		}
		typ, n := be.Uint16(b), int(be.Uint16(b[2:]))
		if n < 8 || n%8 != 0 || n > len(b) {
			return nil, fmt.Errorf("action %d of length %d in %d bytes", typ, n, len(b))
		}
		a, err := parseAction(typ, b[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		b = b[n:]
	}
	return out, nil
}

func parseAction(typ uint16, b []byte) (Action, error) {
	switch {
	case typ == actionOutput && len(b) == 16:
		return output{port: Port(be.Uint32(b[4:]))}, nil
	case typ == actionExperimenter && len(b) >= ctActionLen && be.Uint32(b[4:]) == nxVendor &&
		be.Uint16(b[8:]) == nxastCt:
		return parseCt(b)
	}
	return opaque{fmt.Sprintf("action(type=%d)", typ)}, nil
}

// parseCt decodes nx_action_conntrack; a field-sourced zone, an ALG or nested actions other than setting
// ct_mark make it opaque.
func parseCt(b []byte) (Action, error) {
	flags, zoneSrc, alg := be.Uint16(b[10:]), be.Uint32(b[12:]), be.Uint16(b[22:])
	if flags&^nxCtCommit != 0 || zoneSrc != 0 || alg != 0 {
		return opaque{"ct(...)"}, nil
	}
	c := Ct{Commit: flags&nxCtCommit != 0, Zone: be.Uint16(b[16:])}
	if t := b[18]; t != nxCtNoRecirc {
		c.Table = &t
	}
	nested := b[ctActionLen:]
	if len(nested) == 0 {
		return c, nil
	}
	var m Match
	if len(nested) != 16 || be.Uint16(nested) != actionSetField || be.Uint16(nested[2:]) != 16 ||
		be.Uint32(nested[4:]) != fieldCtMark.header(false) || !m.setField(be.Uint32(nested[4:]), nested[8:12]) {
		return opaque{"ct(...)"}, nil
	}
	c.SetMark = &m.CtMark
	return c, nil
}

// opaque is an action or instruction this package does not decode. It cannot be sent.
type opaque struct{ what string }

func (o opaque) appendAction([]byte) ([]byte, error) {
	return nil, fmt.Errorf("%s was read from the switch and cannot be re-encoded", o.what)
}

func (o opaque) String() string { return o.what }
