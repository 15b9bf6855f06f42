// Package hostnat owns kovn's nftables table in a node's host network namespace. It serves the NodePorts to the
// node's own host: OVN serves NodePorts on the node's gateway router, where traffic from outside arrives, but a
// connection the host opens to one of its own addresses never leaves the host. hostnat rewrites such
// connections to the service's ClusterIP (output hook), which the host reaches through the management port,
// and masquerades them there to the management port's address (postrouting), so that a backend on another node
// answers through the management port too. Loopback addresses are left alone, as kube-proxy's nftables mode
// does.
//
// The table is IPv4 ("ip" family) and named "kovn"; nothing else in the host's rule set is read or touched.
package hostnat

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table kovn owns in the host network namespace.
const TableName = "kovn"

// Chain names in the table.
const (
	chainNodePorts  = "nodeports"
	chainMasquerade = "masquerade"
)

// ipsDstNAT is the conntrack status bit of a destination-NATed connection (IPS_DST_NAT in linux/netfilter/
// nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// Proto is a transport protocol a rule matches.
type Proto uint8

// The protocols NodePorts use here (the kernel may lack SCTP).
const (
	TCP Proto = unix.IPPROTO_TCP
	UDP Proto = unix.IPPROTO_UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Rule sends what the host opens to one of its own (non-loopback) addresses on NodePort to Target.
type Rule struct {
	Proto    Proto
	NodePort uint16
	Target   netip.AddrPort // the service's ClusterIP and port
}

// Table is kovn's table in one network namespace.
type Table struct {
	conn *nftables.Conn
	mgmt string // the management port's interface name
}

// Open returns the table in the network namespace netnsFD refers to; mgmtIface is the management port, the
// only interface whose DNATed traffic is masqueraded.
func Open(netnsFD int, mgmtIface string) (*Table, error) {
	if mgmtIface == "" || len(mgmtIface) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("hostnat: management interface name %q is not a valid interface name", mgmtIface)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(netnsFD))
	if err != nil {
		return nil, fmt.Errorf("hostnat: %w", err)
	}
	return &Table{conn: conn, mgmt: mgmtIface}, nil
}

func (t *Table) table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// Sync replaces the table with one holding exactly rules, in one netlink batch: the kernel applies all of it or
// none, and connections already translated keep their translation.
func (t *Table) Sync(rules []Rule) error {
	for _, r := range rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("hostnat: %w", err)
		}
	}
	tbl := t.table()
	t.conn.AddTable(tbl) // so that the deletion below cannot fail for a missing table
	t.conn.DelTable(tbl)
	t.conn.AddTable(tbl)
	out := t.conn.AddChain(&nftables.Chain{Name: chainNodePorts, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := t.conn.AddChain(&nftables.Chain{Name: chainMasquerade, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for _, r := range sorted(rules) {
		t.conn.AddRule(&nftables.Rule{Table: tbl, Chain: out, Exprs: r.exprs(), UserData: []byte(r.String())})
	}
	t.conn.AddRule(&nftables.Rule{Table: tbl, Chain: post, Exprs: masqueradeExprs(t.mgmt)})
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("hostnat: write table %s (%d rules): %w", TableName, len(rules), err)
	}
	return nil
}

// Check reports whether the table still holds len(rules) NodePort rules and its masquerade rule, so that a
// caller can put back what an operator flushed.
func (t *Table) Check(rules []Rule) error {
	tbl := t.table()
	for _, c := range []struct {
		name string
		want int
	}{{chainNodePorts, len(rules)}, {chainMasquerade, 1}} {
		got, err := t.conn.GetRules(tbl, &nftables.Chain{Name: c.name, Table: tbl})
		if err != nil {
			return fmt.Errorf("hostnat: read chain %s: %w", c.name, err)
		}
		if len(got) != c.want {
			return fmt.Errorf("hostnat: chain %s has %d rules, want %d", c.name, len(got), c.want)
		}
	}
	return nil
}

// Remove deletes kovn's table from the network namespace netnsFD refers to (kovn node teardown); a missing
// table is not an error.
func Remove(netnsFD int) error {
	conn, err := nftables.New(nftables.WithNetNSFd(netnsFD))
	if err != nil {
		return fmt.Errorf("hostnat: %w", err)
	}
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	conn.AddTable(tbl)
	conn.DelTable(tbl)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("hostnat: remove table %s: %w", TableName, err)
	}
	return nil
}

func (r Rule) validate() error {
	switch {
	case r.Proto != TCP && r.Proto != UDP:
		return fmt.Errorf("rule %s: protocol %d is not TCP or UDP", r, r.Proto)
	case r.NodePort == 0:
		return fmt.Errorf("rule %s: no node port", r)
	case !r.Target.Addr().Is4() || r.Target.Port() == 0:
		return fmt.Errorf("rule %s: target is not an IPv4 address and port", r)
	}
	return nil
}

func (r Rule) String() string {
	return fmt.Sprintf("%s/%d->%s", r.Proto, r.NodePort, r.Target)
}

func sorted(rules []Rule) []Rule {
	out := slices.Clone(rules)
	slices.SortFunc(out, func(a, b Rule) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.NodePort) - int(b.NodePort)
	})
	return slices.CompactFunc(out, func(a, b Rule) bool { return a.Proto == b.Proto && a.NodePort == b.NodePort })
}

// exprs is: fib daddr type local, ip daddr != 127.0.0.0/8, meta l4proto P, th dport N, dnat to Target.
func (r Rule) exprs() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.Proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.NodePort)},
		&expr.Immediate{Register: 1, Data: r.Target.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.Target.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// masqueradeExprs is: oifname MGMT, ct status dnat, masquerade.
func masqueradeExprs(mgmt string) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, mgmt)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Masq{},
	}
}
