// Package hostnat owns kovn's nftables table in a node's host network namespace. It serves Services to the node's
// own host where OVN cannot: OVN serves NodePorts and external IPs on the node's gateway router, where traffic
// from outside arrives, but a connection the host opens to one of its own addresses never leaves the host, and
// one to an external IP leaves towards the network rather than the gateway router. hostnat rewrites such
// connections to the service's ClusterIP (output hook), which the host reaches through the management port, and
// masquerades them there to the management port's address (postrouting), so that a backend on another node
// answers through the management port too. Loopback addresses are left alone, as kube-proxy's nftables mode
// does.
//
// The table is IPv4 ("ip" family) and named "kovn"; nothing else in the host's rule set is read or touched.
package hostnat

import (
	"bytes"
	"cmp"
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

// Rule sends what the host opens to one of its own (non-loopback) addresses on a NodePort, or to an external IP
// and port of a service, to Target.
type Rule struct {
	Proto Proto
	// IP, when set, is an external or load-balancer IP of the service: the rule matches connections to IP:Port.
	// When not set the rule is a NodePort: it matches connections to any local address on Port.
	IP     netip.Addr
	Port   uint16
	Target netip.AddrPort // the service's ClusterIP and port
}

// Table is kovn's table in one network namespace: chain "nodeports" (output hook) with, per protocol, a rule
// that looks a local destination's port up in a map (nodeports_P: port -> ClusterIP . port) and one that looks
// the destination address and port up in another (external_P: IP . port -> ClusterIP . port), each DNATing to
// the result; and chain "masquerade" (postrouting).
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

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// natMap is one of the table's maps: one protocol's NodePorts, or its external IPs.
type natMap struct {
	proto    Proto
	external bool // keyed by IP . port rather than by port
}

var natMaps = []natMap{{TCP, false}, {UDP, false}, {TCP, true}, {UDP, true}}

func (m natMap) set() *nftables.Set {
	name, key := "nodeports_"+m.proto.String(), nftables.TypeInetService
	if m.external {
		name, key = "external_"+m.proto.String(), nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	}
	return &nftables.Set{Table: table(), Name: name, IsMap: true, KeyType: key,
		DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)}
}

func (m natMap) holds(r Rule) bool { return r.Proto == m.proto && r.IP.IsValid() == m.external }

// maxElementsPerBatch keeps one netlink batch well under the socket's send buffer.
const maxElementsPerBatch = 500

// Sync makes the table hold exactly rules. The chains and their rules are written in one netlink batch; the
// maps are then changed element by element (removals and additions in batches of at most
// maxElementsPerBatch), so that a NodePort that stays is never missing, whatever the number of NodePorts.
// Connections already translated keep their translation.
func (t *Table) Sync(rules []Rule) error {
	for _, r := range rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("hostnat: %w", err)
		}
	}
	if err := t.writeChains(); err != nil {
		return err
	}
	for _, m := range natMaps {
		set := m.set()
		add, del, err := t.diff(m, rules)
		if err != nil {
			return err
		}
		for chunk := range slices.Chunk(del, maxElementsPerBatch) {
			if err := t.conn.SetDeleteElements(set, chunk); err != nil {
				return fmt.Errorf("hostnat: map %s: %w", set.Name, err)
			}
			if err := t.conn.Flush(); err != nil {
				return fmt.Errorf("hostnat: remove %d elements from map %s: %w", len(chunk), set.Name, err)
			}
		}
		for chunk := range slices.Chunk(add, maxElementsPerBatch) {
			if err := t.conn.SetAddElements(set, chunk); err != nil {
				return fmt.Errorf("hostnat: map %s: %w", set.Name, err)
			}
			if err := t.conn.Flush(); err != nil {
				return fmt.Errorf("hostnat: add %d elements to map %s: %w", len(chunk), set.Name, err)
			}
		}
	}
	return nil
}

// writeChains creates the table, maps and chains when missing and replaces the chains' rules, in one batch.
func (t *Table) writeChains() error {
	tbl := t.conn.AddTable(table())
	out := t.conn.AddChain(&nftables.Chain{Name: chainNodePorts, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := t.conn.AddChain(&nftables.Chain{Name: chainMasquerade, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	t.conn.FlushChain(out)
	t.conn.FlushChain(post)
	for _, m := range natMaps {
		set := m.set()
		if err := t.conn.AddSet(set, nil); err != nil {
			return fmt.Errorf("hostnat: map %s: %w", set.Name, err)
		}
		exprs := nodePortExprs(m.proto, set)
		if m.external {
			exprs = externalExprs(m.proto, set)
		}
		t.conn.AddRule(&nftables.Rule{Table: tbl, Chain: out, Exprs: exprs})
	}
	t.conn.AddRule(&nftables.Rule{Table: tbl, Chain: post, Exprs: masqueradeExprs(t.mgmt)})
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("hostnat: write table %s: %w", TableName, err)
	}
	return nil
}

// diff returns the elements of a map to add and to delete so that it holds exactly rules' ones.
func (t *Table) diff(m natMap, rules []Rule) (add, del []nftables.SetElement, err error) {
	set := m.set()
	want := map[string]nftables.SetElement{}
	for _, r := range sorted(rules) {
		if m.holds(r) {
			e := r.element()
			want[string(e.Key)] = e
		}
	}
	have, err := t.conn.GetSetElements(set)
	if err != nil {
		return nil, nil, fmt.Errorf("hostnat: read map %s: %w", set.Name, err)
	}
	for _, e := range have {
		w, ok := want[string(e.Key)]
		switch {
		case !ok:
			del = append(del, nftables.SetElement{Key: e.Key})
		case !bytes.Equal(w.Val, e.Val): // the port now leads elsewhere: replace it
			del = append(del, nftables.SetElement{Key: e.Key})
		default:
			delete(want, string(e.Key))
		}
	}
	for _, e := range want {
		add = append(add, e)
	}
	slices.SortFunc(add, func(a, b nftables.SetElement) int { return bytes.Compare(a.Key, b.Key) })
	return add, del, nil
}

// Check reports what differs between the table and rules (a rule, a map element missing or extra), so that a
// caller can put back what an operator flushed.
func (t *Table) Check(rules []Rule) error {
	tbl := table()
	for _, c := range []struct {
		name string
		want int
	}{{chainNodePorts, len(natMaps)}, {chainMasquerade, 1}} {
		got, err := t.conn.GetRules(tbl, &nftables.Chain{Name: c.name, Table: tbl})
		if err != nil {
			return fmt.Errorf("hostnat: read chain %s: %w", c.name, err)
		}
		if len(got) != c.want {
			return fmt.Errorf("hostnat: chain %s has %d rules, want %d", c.name, len(got), c.want)
		}
	}
	for _, m := range natMaps {
		add, del, err := t.diff(m, rules)
		if err != nil {
			return err
		}
		if len(add)+len(del) > 0 {
			return fmt.Errorf("hostnat: map %s lacks %d elements and has %d it should not", m.set().Name, len(add), len(del))
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
	case r.Port == 0:
		return fmt.Errorf("rule %s: no port", r)
	case r.IP.IsValid() && !r.IP.Is4():
		return fmt.Errorf("rule %s: the external IP is not IPv4", r)
	case !r.Target.Addr().Is4() || r.Target.Port() == 0:
		return fmt.Errorf("rule %s: target is not an IPv4 address and port", r)
	}
	return nil
}

func (r Rule) String() string {
	if r.IP.IsValid() {
		return fmt.Sprintf("%s/%s->%s", r.Proto, netip.AddrPortFrom(r.IP, r.Port), r.Target)
	}
	return fmt.Sprintf("%s/%d->%s", r.Proto, r.Port, r.Target)
}

func sorted(rules []Rule) []Rule {
	out := slices.Clone(rules)
	slices.SortFunc(out, func(a, b Rule) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	return slices.CompactFunc(out, func(a, b Rule) bool { return a.Proto == b.Proto && a.IP == b.IP && a.Port == b.Port })
}

// element is the rule's map element: the port (or the IP and port), to the ClusterIP and port; each field of a
// concatenation is padded to 4 bytes, as the kernel's registers hold them.
func (r Rule) element() nftables.SetElement {
	ip := r.Target.Addr().As4()
	port := binaryutil.BigEndian.PutUint16(r.Target.Port())
	key := binaryutil.BigEndian.PutUint16(r.Port)
	if r.IP.IsValid() {
		a := r.IP.As4()
		key = []byte{a[0], a[1], a[2], a[3], key[0], key[1], 0, 0}
	}
	return nftables.SetElement{Key: key, Val: []byte{ip[0], ip[1], ip[2], ip[3], port[0], port[1], 0, 0}}
}

// nodePortExprs is: fib daddr type local, ip daddr != 127.0.0.0/8, meta l4proto P,
// dnat ip to th dport map @nodeports_P.
func nodePortExprs(p Proto, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// The map's value lands in register 1: the address in its first 32 bits, the port in the next (register 9).
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, DestRegister: 1, IsDestRegSet: true},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9, Specified: true},
	}
}

// externalExprs is: meta l4proto P, dnat ip to ip daddr . th dport map @external_P.
func externalExprs(p Proto, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}},
		// The key: the address in register 1's first 32 bits, the port in the next (register 9).
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, DestRegister: 1, IsDestRegSet: true},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9, Specified: true},
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
