package openflow

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

var portNames = map[Port]string{
	0xfffffff8: "IN_PORT", 0xfffffff9: "TABLE", PortNormal: "NORMAL", 0xfffffffb: "FLOOD",
	0xfffffffc: "ALL", 0xfffffffd: "CONTROLLER", PortLocal: "LOCAL", portAny: "ANY",
}

// String renders the port as ovs-ofctl does: a number or a reserved port's name (LOCAL, NORMAL, ...).
func (p Port) String() string {
	if name, ok := portNames[p]; ok {
		return name
	}
	return strconv.FormatUint(uint64(p), 10)
}

var ctStateNames = []struct {
	bit  CtState
	name string
}{{CtNew, "new"}, {CtEst, "est"}, {CtRel, "rel"}, {CtRpl, "rpl"}, {CtInv, "inv"}, {CtTrk, "trk"}}

// ctStateString renders ct_state flags as ovs-ofctl does ("+est+trk", "-new"); unnamed bits in hex.
func ctStateString(state, mask CtState) string {
	var sb strings.Builder
	for _, n := range ctStateNames {
		if mask&n.bit == 0 {
			continue
		}
		if state&n.bit != 0 {
			sb.WriteString("+" + n.name)
		} else {
			sb.WriteString("-" + n.name)
		}
		mask &^= n.bit
	}
	if mask != 0 {
		if sb.Len() > 0 {
			sb.WriteString("+")
		}
		fmt.Fprintf(&sb, "0x%x/0x%x", state&mask, mask)
	}
	return sb.String()
}

// String renders the match as ovs-ofctl's match syntax ("in_port=2,udp,tp_dst=6081"); "" matches all.
func (m Match) String() string {
	var parts []string
	if m.InPort != 0 {
		parts = append(parts, "in_port="+m.InPort.String())
	}
	if p := protoString(m.EthType, m.IPProto); p != "" {
		parts = append(parts, p)
	}
	if m.CtStateMask != 0 {
		parts = append(parts, "ct_state="+ctStateString(m.CtState, m.CtStateMask))
	}
	if m.CtMarkMask == ^uint32(0) {
		parts = append(parts, fmt.Sprintf("ct_mark=0x%x", m.CtMark))
	} else if m.CtMarkMask != 0 {
		parts = append(parts, fmt.Sprintf("ct_mark=0x%x/0x%x", m.CtMark, m.CtMarkMask))
	}
	for _, f := range []struct {
		name string
		p    netip.Prefix
	}{{"nw_src", m.IPv4Src}, {"nw_dst", m.IPv4Dst}} {
		if f.p.IsValid() && f.p.Bits() == 32 {
			parts = append(parts, f.name+"="+f.p.Addr().String())
		} else if f.p.IsValid() {
			parts = append(parts, f.name+"="+f.p.String())
		}
	}
	if m.TpDst != 0 {
		parts = append(parts, "tp_dst="+strconv.Itoa(int(m.TpDst)))
	}
	return strings.Join(parts, ",")
}

func protoString(ethType uint16, proto uint8) string {
	if ethType == EthTypeIPv4 {
		switch proto {
		case 0:
			return "ip"
		case IPProtoICMP:
			return "icmp"
		case IPProtoTCP:
			return "tcp"
		case IPProtoUDP:
			return "udp"
		}
		return "ip,nw_proto=" + strconv.Itoa(int(proto))
	}
	switch ethType {
	case 0:
		return ""
	case EthTypeARP:
		return "arp"
	}
	return fmt.Sprintf("dl_type=0x%04x", ethType)
}

func (o output) String() string { return "output:" + o.port.String() }

// String renders the action as ovs-ofctl does: ct(commit,zone=64000,table=1,exec(set_field:0x1->ct_mark)).
func (c Ct) String() string {
	var parts []string
	if c.Commit {
		parts = append(parts, "commit")
	}
	if c.Zone != 0 {
		parts = append(parts, "zone="+strconv.Itoa(int(c.Zone)))
	}
	if c.Table != nil {
		parts = append(parts, "table="+strconv.Itoa(int(*c.Table)))
	}
	if c.SetMark != nil {
		parts = append(parts, fmt.Sprintf("exec(set_field:0x%x->ct_mark)", *c.SetMark))
	}
	return "ct(" + strings.Join(parts, ",") + ")"
}

// String renders the flow like ovs-ofctl dump-flows, for logs and test failures:
// "cookie=0x2a,table=0,priority=100,in_port=2,ip actions=ct(zone=64000,table=1)". A zero cookie is left out.
func (f Flow) String() string {
	var sb strings.Builder
	if f.Cookie != 0 {
		fmt.Fprintf(&sb, "cookie=0x%x,", f.Cookie)
	}
	fmt.Fprintf(&sb, "table=%d,priority=%d", f.Table, f.Priority)
	if m := f.Match.String(); m != "" {
		sb.WriteString("," + m)
	}
	sb.WriteString(" actions=")
	if len(f.Actions) == 0 {
		sb.WriteString("drop")
	}
	for i, a := range f.Actions {
		if i > 0 {
			sb.WriteString(",")
		}
		if a == nil {
			sb.WriteString("<nil>")
		} else {
			sb.WriteString(a.String())
		}
	}
	return sb.String()
}
