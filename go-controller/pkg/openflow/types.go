package openflow

import (
	"fmt"
	"net/netip"
)

// Port is an OpenFlow 1.3 port number.
type Port uint32

const (
	// PortLocal (OFPP_LOCAL) is the bridge's own internal interface: the host.
	PortLocal Port = 0xfffffffe
	// PortNormal (OFPP_NORMAL) hands the packet to the bridge's MAC-learning switch.
	PortNormal Port = 0xfffffffa
	portAny    Port = 0xffffffff // OFPP_ANY
)

// CtState is a set of NXM ct_state bits.
type CtState uint32

// The ct_state bits kovn matches on.
const (
	CtNew CtState = 0x01
	CtEst CtState = 0x02
	CtRel CtState = 0x04
	CtRpl CtState = 0x08
	CtInv CtState = 0x10
	CtTrk CtState = 0x20
)

// Ethernet types and IP protocols with a name in Flow.String.
const (
	EthTypeIPv4 uint16 = 0x0800
	EthTypeARP  uint16 = 0x0806
	IPProtoICMP uint8  = 1
	IPProtoTCP  uint8  = 6
	IPProtoUDP  uint8  = 17
)

// Match selects packets. Every zero field matches anything.
type Match struct {
	InPort  Port   // 0 = any
	EthType uint16 // 0 = any; EthTypeIPv4, EthTypeARP, ...
	IPProto uint8  // 0 = any; requires EthType EthTypeIPv4
	// TpDst is the TCP (IPProto 6) or UDP (IPProto 17) destination port; 0 = any.
	TpDst uint16
	// IPv4Dst and IPv4Src are matched under their prefix length (the zero Prefix, or a /0, matches any);
	// they require EthType EthTypeIPv4. Host bits are ignored.
	IPv4Dst, IPv4Src netip.Prefix
	// CtState is compared under CtStateMask (mask 0 = any): a bit set in both must be set, a bit set only in
	// the mask must be clear.
	CtState, CtStateMask CtState
	// CtMark is compared under CtMarkMask (mask 0 = any).
	CtMark, CtMarkMask uint32
}

// Action is one OpenFlow action: Output(port) or a Ct.
type Action interface {
	// appendAction appends the action's wire encoding (a multiple of 8 bytes) to b.
	appendAction(b []byte) ([]byte, error)
	String() string
}

// Output sends the packet to a port (OFPAT_OUTPUT).
func Output(p Port) Action { return output{port: p} }

type output struct{ port Port }

// Ct sends the packet through conntrack (the Nicira NXAST_CT action, ovs-ofctl's ct(...)).
type Ct struct {
	// Commit commits the connection to the conntrack table.
	Commit bool
	// Zone is the conntrack zone.
	Zone uint16
	// Table, when not nil, recirculates the packet, with its ct_state filled in, to this table (not 255).
	// Without it the ct action only commits or updates the connection and processing goes on.
	Table *uint8
	// SetMark, when not nil, sets the connection's ct_mark (exec(set_field:X->ct_mark)); needs Commit.
	SetMark *uint32
}

// Flow is one flow entry. Idle and hard timeouts are always 0 (permanent).
type Flow struct {
	Table    uint8
	Priority uint16
	Cookie   uint64
	Match    Match
	// Actions are applied in order (one APPLY_ACTIONS instruction); none drops the packet.
	Actions []Action
}

// normalize validates m and returns it in canonical form: prefixes masked, /0 prefixes and values outside
// their masks cleared, so that equal matches compare equal with ==.
func (m Match) normalize() (Match, error) {
	if m.IPProto != 0 && m.EthType != EthTypeIPv4 {
		return m, fmt.Errorf("ip_proto %d needs eth_type 0x0800, have 0x%04x", m.IPProto, m.EthType)
	}
	if m.TpDst != 0 && m.IPProto != IPProtoTCP && m.IPProto != IPProtoUDP {
		return m, fmt.Errorf("tp_dst %d needs ip_proto tcp or udp, have %d", m.TpDst, m.IPProto)
	}
	var err error
	if m.IPv4Src, err = normalizePrefix("nw_src", m.IPv4Src, m.EthType); err != nil {
		return m, err
	}
	if m.IPv4Dst, err = normalizePrefix("nw_dst", m.IPv4Dst, m.EthType); err != nil {
		return m, err
	}
	m.CtState &= m.CtStateMask
	m.CtMark &= m.CtMarkMask
	return m, nil
}

func normalizePrefix(name string, p netip.Prefix, ethType uint16) (netip.Prefix, error) {
	if p == (netip.Prefix{}) {
		return p, nil
	}
	if !p.IsValid() || !p.Addr().Is4() {
		return p, fmt.Errorf("%s %v is not an IPv4 prefix", name, p)
	}
	if ethType != EthTypeIPv4 {
		return p, fmt.Errorf("%s needs eth_type 0x0800, have 0x%04x", name, ethType)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, nil
	}
	return p.Masked(), nil
}
