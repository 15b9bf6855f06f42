package openflow

import (
	"context"
	"errors"
	"fmt"
)

// flowKey identifies a flow the way the switch does: OFPFC_ADD overwrites and DELETE_STRICT removes the flow
// with the same table, priority and match.
type flowKey struct {
	table    uint8
	priority uint16
	match    Match // normalized
}

// pending is a flow mod to send, with what to call it in errors.
type pending struct {
	mod  flowMod
	desc string
}

// Replace makes the flows carrying cookie (under a full cookie mask) exactly flows, whose Cookie must all be
// cookie. It reads the flows installed with that cookie, adds or overwrites every one of flows (OFPFC_ADD)
// and waits on a barrier, then deletes (DELETE_STRICT) the installed ones not among flows and waits on a
// second barrier. If the switch rejects a flow, Replace returns the switch's errors (as *Error, naming the
// flow) and deletes nothing. Flows with other cookies are never touched. Cookies 0 (OVS's own default flow)
// and all-ones (reserved) are refused.
func (c *Conn) Replace(ctx context.Context, cookie uint64, flows []Flow) error {
	mods, keys, err := prepare(cookie, flows)
	if err == nil {
		err = c.do(ctx, func() error { return c.replace(cookie, mods, keys) })
	}
	if err != nil {
		return fmt.Errorf("openflow: %s: replace flows with cookie 0x%x: %w", c.path, cookie, err)
	}
	return nil
}

// prepare validates and encodes flows.
func prepare(cookie uint64, flows []Flow) ([]pending, map[flowKey]int, error) {
	if cookie == 0 || cookie == ^uint64(0) {
		return nil, nil, fmt.Errorf("cookie 0x%x is not one kovn may own", cookie)
	}
	mods := make([]pending, 0, len(flows))
	keys := make(map[flowKey]int, len(flows))
	for i, f := range flows {
		if f.Cookie != cookie {
			return nil, nil, fmt.Errorf("flow %d (%s) has cookie 0x%x", i, f, f.Cookie)
		}
		mod, m, err := addFlowMod(f)
		if err != nil {
			return nil, nil, fmt.Errorf("flow %d (%s): %w", i, f, err)
		}
		k := flowKey{f.Table, f.Priority, m}
		if j, dup := keys[k]; dup {
			return nil, nil, fmt.Errorf("flows %d and %d have the same table, priority and match (%s)", j, i, f)
		}
		keys[k] = i
		mods = append(mods, pending{mod: mod, desc: "flow " + f.String()})
	}
	return mods, keys, nil
}

func (c *Conn) replace(cookie uint64, mods []pending, keys map[flowKey]int) error {
	current, err := c.dump(cookie)
	if err != nil {
		return fmt.Errorf("read installed flows: %w", err)
	}
	if err := c.apply(mods); err != nil {
		return err
	}
	var stale []pending
	for _, in := range current {
		m, err := in.flow.Match.normalize()
		if _, want := keys[flowKey{in.flow.Table, in.flow.Priority, m}]; in.exact && err == nil && want {
			continue
		}
		stale = append(stale, pending{desc: "delete of flow " + in.flow.String(), mod: flowMod{
			command: cmdDeleteStrict, cookie: cookie, cookieMask: ^uint64(0),
			table: in.flow.Table, priority: in.flow.Priority, match: in.match,
		}})
	}
	return c.apply(stale)
}

// apply sends flow mods and a barrier, waits for the barrier reply and returns the errors the switch sent
// for the mods meanwhile.
func (c *Conn) apply(mods []pending) error {
	if len(mods) == 0 {
		return nil
	}
	msgs := make([][]byte, 0, len(mods)+1)
	desc := make(map[uint32]string, len(mods))
	for _, p := range mods {
		xid := c.nextXid()
		b, err := p.mod.marshal(xid)
		if err != nil {
			return fmt.Errorf("%s: %w", p.desc, err)
		}
		msgs, desc[xid] = append(msgs, b), p.desc
	}
	barrierXid := c.nextXid()
	barrier, err := simpleMessage(typeBarrierRequest, barrierXid, nil)
	if err != nil {
		return err
	}
	var rejected []error
	err = c.exchange(append(msgs, barrier), func(m message) (bool, error) {
		switch {
		case m.typ == typeError:
			rejected = append(rejected, parseError(m.xid, m.body, describe(desc, m.xid)))
		case m.typ == typeBarrierReply && m.xid == barrierXid:
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	return errors.Join(rejected...)
}

func describe(desc map[uint32]string, xid uint32) string {
	if d, ok := desc[xid]; ok {
		return d
	}
	return "an unknown request"
}

// Flows returns the flows installed with this cookie, in all tables. Their Match holds the fields Match
// represents (others the switch reports are left out). Output and Ct actions are decoded; any other action
// or instruction is returned as an opaque Action that renders its kind in String but cannot be sent back.
func (c *Conn) Flows(ctx context.Context, cookie uint64) ([]Flow, error) {
	var flows []Flow
	err := c.do(ctx, func() error {
		current, err := c.dump(cookie)
		for _, in := range current {
			flows = append(flows, in.flow)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("openflow: %s: flows with cookie 0x%x: %w", c.path, cookie, err)
	}
	return flows, nil
}

// dump reads the flows with this cookie with an OFPMP_FLOW multipart request, whose reply may span several
// messages.
func (c *Conn) dump(cookie uint64) ([]installed, error) {
	xid := c.nextXid()
	req, err := flowStatsRequest(xid, cookie)
	if err != nil {
		return nil, err
	}
	var out []installed
	var rejected error
	err = c.exchange([][]byte{req}, func(m message) (bool, error) {
		if m.xid != xid {
			return false, nil
		}
		switch m.typ {
		case typeError:
			rejected = parseError(xid, m.body, "flow stats request")
			return true, nil
		case typeMultipartReply:
			if len(m.body) < 8 || be.Uint16(m.body) != multipartFlow {
				return false, fmt.Errorf("malformed flow stats reply")
			}
			entries, err := parseFlowStats(m.body[8:])
			out = append(out, entries...)
			return be.Uint16(m.body[2:])&multipartReplyMore == 0, err
		}
		return false, nil
	})
	if err == nil {
		err = rejected
	}
	return out, err
}
