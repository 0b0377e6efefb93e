package capture

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Table is the name of the nftables table (family inet) that holds every
// rule Apply installs; Remove deletes it, and nothing else is touched.
const Table = "zmesh"

// Apply installs the redirect rules for cfg in cfg.NetNS (the caller's
// namespace when empty), replacing any that an earlier Apply installed, in
// one netlink transaction: the namespace is never without rules in
// between, and a failure leaves the previous rules in force. Applying the
// same Config twice is a no-op in effect. It needs CAP_NET_ADMIN in the
// namespace and a kernel with nftables' inet NAT (Linux 5.2 or later).
func Apply(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c, closeNS, err := conn(cfg.NetNS)
	if err != nil {
		return err
	}
	defer closeNS()
	exists, err := tableExists(c)
	if err != nil {
		return err
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: Table}
	if exists {
		c.DelTable(tbl)
	}
	c.AddTable(tbl)
	chains := map[Hook]*nftables.Chain{
		HookOutput: c.AddChain(&nftables.Chain{Name: "output", Table: tbl, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest}),
		HookPrerouting: c.AddChain(&nftables.Chain{Name: "prerouting", Table: tbl, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest}),
	}
	for _, r := range Rules(cfg) {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[r.Hook], Exprs: exprs(r), UserData: comment(r)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("capture: install nftables rules: %w", err)
	}
	return nil
}

// Remove deletes the rules Apply installed in the namespace at netnsPath
// (the caller's when empty). Removing what is not there is not an error.
func Remove(ctx context.Context, netnsPath string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, closeNS, err := conn(netnsPath)
	if err != nil {
		return err
	}
	defer closeNS()
	exists, err := tableExists(c)
	if err != nil || !exists {
		return err
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: Table})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("capture: remove nftables rules: %w", err)
	}
	return nil
}

// Installed reports whether Apply's table is present in the namespace at
// netnsPath (the caller's when empty).
func Installed(netnsPath string) (bool, error) {
	c, closeNS, err := conn(netnsPath)
	if err != nil {
		return false, err
	}
	defer closeNS()
	return tableExists(c)
}

// conn returns an nftables connection to the namespace at path, or to the
// caller's namespace when path is empty.
func conn(path string) (*nftables.Conn, func(), error) {
	if path == "" {
		c, err := nftables.New()
		return c, func() {}, err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("capture: network namespace %s: %w", path, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		ns.Close()
		return nil, nil, err
	}
	return c, func() { ns.Close() }, nil
}

func tableExists(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return false, fmt.Errorf("capture: nftables: %w (capture needs root or CAP_NET_ADMIN)", err)
		}
		return false, fmt.Errorf("capture: nftables: %w", err)
	}
	for _, t := range tables {
		if t.Name == Table {
			return true, nil
		}
	}
	return false, nil
}

// exprs translates r into nftables expressions, all through register 1.
// An address condition first checks the packet's family, since the inet
// table sees IPv4 and IPv6 alike.
func exprs(r Rule) []expr.Any {
	var e []expr.Any
	cmp := func(op expr.CmpOp, data []byte) { e = append(e, &expr.Cmp{Op: op, Register: 1, Data: data}) }
	e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1})
	cmp(expr.CmpOpEq, []byte{byte(r.Proto)})
	if r.OutLoopback {
		e = append(e, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1})
		cmp(expr.CmpOpEq, []byte("lo\x00"))
	}
	prefix := func(p netip.Prefix, dst bool, op expr.CmpOp) {
		if !p.IsValid() {
			return
		}
		fam, off := byte(unix.NFPROTO_IPV4), uint32(12)
		if p.Addr().Is6() {
			fam, off = unix.NFPROTO_IPV6, 8
		}
		if dst {
			off += uint32(p.Addr().BitLen() / 8)
		}
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1})
		cmp(expr.CmpOpEq, []byte{fam})
		n := uint32(p.Addr().BitLen() / 8)
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
		if !p.IsSingleIP() {
			mask := netip.PrefixFrom(allOnes(p.Addr().Is6()), p.Bits()).Masked().Addr().AsSlice()
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
		}
		cmp(op, p.Masked().Addr().AsSlice())
	}
	prefix(r.Src, false, expr.CmpOpEq)
	prefix(r.Dst, true, expr.CmpOpEq)
	prefix(r.NotDst, true, expr.CmpOpNeq)
	port := func(p uint16, op expr.CmpOp) {
		if p != 0 {
			e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			cmp(op, binaryutil.BigEndian.PutUint16(p))
		}
	}
	port(r.DstPort, expr.CmpOpEq)
	port(r.NotDstPort, expr.CmpOpNeq)
	if r.SkUID != nil {
		e = append(e, &expr.Meta{Key: expr.MetaKeySKUID, Register: 1})
		cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(*r.SkUID))
	}
	if r.SkGID != nil {
		e = append(e, &expr.Meta{Key: expr.MetaKeySKGID, Register: 1})
		cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(*r.SkGID))
	}
	if r.Mark != 0 {
		e = append(e, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(r.Mark), Xor: make([]byte, 4)})
		cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(r.Mark))
	}
	if r.Redirect != 0 {
		e = append(e, &expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Redirect)},
			&expr.Redir{RegisterProtoMin: 1})
	} else {
		e = append(e, &expr.Verdict{Kind: expr.VerdictReturn})
	}
	return e
}

// comment is r as an nft rule comment (at most 127 bytes), so that `nft
// list ruleset` shows what each rule is for.
func comment(r Rule) []byte {
	s := r.String()
	if len(s) > 127 {
		s = s[:127]
	}
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

func allOnes(v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		for i := range b {
			b[i] = 0xff
		}
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{0xff, 0xff, 0xff, 0xff})
}
