// Package nft keeps the agent's firewall-mark rules in the kernel's nftables: one table,
// `inet lvsctl`, with one fixed base chain, `prerouting`, whose four fixed rules look the
// packet's destination address, protocol and port up in maps (single ports and port ranges,
// IPv4 and IPv6) and set the mark found there, so IPVS firewall-mark services see the packets. A MarkRule is one map
// element (see layout.go). The agent owns that table and nothing else: it never reads or
// changes any other table. Every change is one nftables transaction, however large.
package nft

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// TableName and ChainName name the table (family inet) and base chain the agent owns.
const (
	TableName = "lvsctl"
	ChainName = "prerouting"
)

// Option configures New.
type Option func(*options)

type options struct {
	netNSFd int // -1: the caller's network namespace
	log     *slog.Logger
}

// WithLogger sets where Watch reports trouble with its monitor; the default discards it.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithNetNSFd makes the Firewall work in the network namespace the file descriptor refers
// to (an open /run/netns/NAME, say). New duplicates the descriptor, so the caller may close
// its own.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netNSFd = fd } }

// Firewall holds table inet lvsctl to a desired list of mark rules.
type Firewall struct {
	conn *nftables.Conn // reads; each transaction has a Conn of its own (see batch.go)
	nsFd int            // our duplicate of the namespace fd, or -1
	log  *slog.Logger
	// The objects are this Firewall's own: the nftables library keeps the pointers it is
	// given in its batch, so Firewalls must not share them.
	table *nftables.Table
	chain *nftables.Chain

	// mu serialises read-diff-write in SetMarkRules, and transactions with it.
	mu sync.Mutex
	// model is the rules the kernel holds, as the caller gave them, per the last SetMarkRules
	// and the ChangeMarkRules since; elems their map elements. nil: unknown.
	model logical
	elems map[dataplane.MarkRule]bool
}

// New returns a Firewall after checking that the kernel speaks nftables. A kernel without it
// gives an error wrapping dataplane.ErrUnavailable.
func New(opts ...Option) (*Firewall, error) {
	o := options{netNSFd: -1, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	table, chain := objects()
	f := &Firewall{nsFd: -1, log: o.log, table: table, chain: chain}
	var connOpts []nftables.ConnOption
	if o.netNSFd >= 0 {
		fd, err := unix.FcntlInt(uintptr(o.netNSFd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("nft: duplicate network namespace fd %d: %w", o.netNSFd, err)
		}
		f.nsFd = fd
		connOpts = append(connOpts, nftables.WithNetNSFd(fd))
	}
	conn, err := nftables.New(connOpts...)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nft: %w", err)
	}
	f.conn = conn
	// A harmless read proves the kernel has nf_tables and the inet family.
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		f.Close()
		return nil, classify("list inet tables", err)
	}
	return f, nil
}

// Close releases the Firewall's resources. The kernel's rules stay.
func (f *Firewall) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nsFd >= 0 {
		_ = unix.Close(f.nsFd) // a dup'd fd: nothing to lose if closing it fails
		f.nsFd = -1
	}
}

// classify wraps a kernel error, marking the errors that mean nftables is missing.
func classify(op string, err error) error {
	// EPROTONOSUPPORT: no NETLINK_NETFILTER; EOPNOTSUPP: nfnetlink without the nf_tables
	// subsystem; EAFNOSUPPORT: nf_tables without the inet family.
	if errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EAFNOSUPPORT) {
		return fmt.Errorf("nft: %s: %w: nftables (inet family) is not available in this kernel (%w): load it with \"modprobe nf_tables\"", op, dataplane.ErrUnavailable, err)
	}
	return fmt.Errorf("nft: %s: %w", op, err)
}

// objects returns a new table inet lvsctl and its one base chain. Priority mangle (-150) runs
// before conntrack-based NAT and before IPVS, which hooks LOCAL_IN, so IPVS sees the mark.
func objects() (*nftables.Table, *nftables.Chain) {
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	return table, &nftables.Chain{
		Name:     ChainName,
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  ref(*nftables.ChainHookPrerouting),
		Priority: ref(*nftables.ChainPriorityMangle),
		Policy:   ref(nftables.ChainPolicyAccept),
	}
}

func ref[T any](v T) *T { return &v }

// kernelElement is one element found in one of our maps: a MarkRule when valid, else the
// element as listed, to delete it by.
type kernelElement struct {
	m     *markMap
	mark  dataplane.MarkRule
	valid bool
	raw   *nftables.SetElement // when not valid
}

// element returns what deletes e.
func (e kernelElement) element() nftables.SetElement {
	if e.valid {
		return element(e.mark)
	}
	return *e.raw
}

// state is what read found in table inet lvsctl.
type state struct {
	tableExists bool
	// rebuild: the table holds something SetMarkRules cannot repair in place (a chain or map
	// with other attributes, a chain or set it did not make, a dormant table): it deletes and
	// re-creates the table in one transaction.
	rebuild     bool
	chainExists bool
	setExists   map[*markMap]bool
	ruleExists  map[*markMap]bool
	// foreign are the rules in our chain that are not our fixed rules: v1 rules, hand-made
	// ones, duplicates. legacy are the valid v1 rules among them.
	foreign  []*nftables.Rule
	legacy   []dataplane.MarkRule
	elements []kernelElement
}

func (f *Firewall) read() (state, error) {
	s := state{setExists: map[*markMap]bool{}, ruleExists: map[*markMap]bool{}}
	tables, err := f.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return s, classify("list inet tables", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			s.tableExists = true
			// A dormant table is not evaluated: no packet would get a mark. The library
			// decodes NFTA_TABLE_FLAGS in host byte order; the kernel sends network order.
			flags := binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, t.Flags))
			s.rebuild = s.rebuild || flags&unix.NFT_TABLE_F_DORMANT != 0
		}
	}
	if !s.tableExists {
		return s, nil
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return s, classify("list inet chains", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		if c.Name != ChainName {
			s.rebuild = true
			continue
		}
		s.chainExists = true
		want := f.chain
		ok := c.Type == want.Type && c.Hooknum != nil && *c.Hooknum == *want.Hooknum &&
			c.Priority != nil && *c.Priority == *want.Priority && c.Policy != nil && *c.Policy == *want.Policy
		s.rebuild = s.rebuild || !ok
	}
	sets, err := f.conn.GetSets(f.table)
	if err != nil {
		return s, fmt.Errorf("nft: list sets of inet %s: %w", TableName, err)
	}
	for _, set := range sets {
		i := slices.IndexFunc(markMaps, func(m *markMap) bool { return m.name == set.Name })
		if i < 0 || !markMaps[i].setOK(set) {
			s.rebuild = true
			continue
		}
		s.setExists[markMaps[i]] = true
	}
	if s.rebuild {
		// Everything goes with the table; only the elements are worth reading, to count.
		return s, f.readElements(&s)
	}
	if s.chainExists {
		rules, err := f.conn.GetRules(f.table, f.chain)
		if err != nil {
			return s, fmt.Errorf("nft: list rules of inet %s %s: %w", TableName, ChainName, err)
		}
		for _, r := range rules {
			i := slices.IndexFunc(markMaps, func(m *markMap) bool { return m.isRule(r) })
			if i >= 0 && !s.ruleExists[markMaps[i]] {
				s.ruleExists[markMaps[i]] = true
				continue
			}
			s.foreign = append(s.foreign, r)
			if c, ok := commentOf(r.UserData); ok {
				if m, err := parseLegacyKey(c); err == nil && reflect.DeepEqual(r.Exprs, legacyExprs(m)) {
					s.legacy = append(s.legacy, m)
				}
			}
		}
	}
	return s, f.readElements(&s)
}

// readElements dumps the elements of the maps that exist, in bulk.
func (f *Firewall) readElements(s *state) error {
	for _, m := range markMaps {
		if !s.setExists[m] {
			continue
		}
		err := f.dumpElements(m, func(e nftables.SetElement) {
			r, ok := markRuleOf(m, e)
			k := kernelElement{m: m, mark: r, valid: ok}
			if !ok {
				// The slices point into the dump's buffer, which the next read reuses.
				e.Key, e.KeyEnd, e.Val = bytes.Clone(e.Key), bytes.Clone(e.KeyEnd), bytes.Clone(e.Val)
				k.raw = &e
			}
			s.elements = append(s.elements, k)
		})
		if err != nil {
			return fmt.Errorf("nft: list elements of inet %s %s: %w", TableName, m.name, err)
		}
	}
	return nil
}

// MarkRules returns the mark rules in table inet lvsctl, sorted: the maps' elements, and the
// rules of the v1 layout while an agent upgraded in place has not replaced them yet. Elements
// and rules there that are not ours (made by hand) are left out; SetMarkRules deletes them.
func (f *Firewall) MarkRules() ([]dataplane.MarkRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.read()
	if err != nil {
		return nil, err
	}
	out := slices.Clone(s.legacy)
	for _, e := range s.elements {
		if e.valid {
			out = append(out, e.mark)
		}
	}
	if f.holds(s, out) {
		out = out[:0]
		for _, rs := range f.model {
			out = append(out, rs...)
		}
	}
	slices.SortFunc(out, compare)
	return slices.Compact(out), nil
}

// holds reports whether the kernel's elements are exactly those of the rules last set: then
// MarkRules returns those rules as they were given, overlapping ranges of one mark included
// (the kernel holds their union).
func (f *Firewall) holds(s state, found []dataplane.MarkRule) bool {
	if f.model == nil || len(s.legacy) > 0 || s.rebuild || len(found) != len(f.elems) {
		return false
	}
	for _, e := range found {
		if !f.elems[e] {
			return false
		}
	}
	return true
}

func compare(a, b dataplane.MarkRule) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.FirstPort, b.FirstPort), cmp.Compare(a.LastPort, b.LastPort), cmp.Compare(a.Mark, b.Mark))
}

// group is the rules of one VIP and protocol: the interval map holds their ranges without
// overlaps.
type group struct {
	vip   netip.Addr
	proto dataplane.Protocol
}

func groupOf(r dataplane.MarkRule) group { return group{r.VIP, r.Protocol} }

// logical is a list of mark rules as the caller gave them, by group; each group sorted and
// without duplicates.
type logical map[group][]dataplane.MarkRule

// desired validates rules (what names the bad one: "mark rule 3"), drops duplicates and
// groups them.
func desired(what string, rules []dataplane.MarkRule) (logical, error) {
	out := logical{}
	for i, r := range rules {
		if err := validate(r); err != nil {
			return nil, fmt.Errorf("nft: %s %d (%s): %w", what, i, r, err)
		}
		r.VIP = r.VIP.Unmap()
		out[groupOf(r)] = append(out[groupOf(r)], r)
	}
	for g, rs := range out {
		slices.SortFunc(rs, compare)
		out[g] = slices.Compact(rs)
	}
	return out, nil
}

// elements returns the map elements of one group's rules, which are sorted and without
// duplicates. A single port and a range go to different maps, so a single port may lie inside a
// range of the same mark (Windows Media's udp 1755 inside udp 1024-5000). The ranges share an
// interval map, which cannot hold two elements that share a port: overlapping ranges of the
// same mark become one element of their union. Ports that overlap with different marks would
// give a packet two marks: refused, with an error wrapping dataplane.ErrExist.
func elements(rs []dataplane.MarkRule) ([]dataplane.MarkRule, error) {
	// Sorted by first port, the rules that contain a rule's first port and came before it all
	// contain it, so they overlap each other and share one mark: the one to compare with.
	var reach uint16
	var holder dataplane.MarkRule
	for i, r := range rs {
		if i > 0 && r.FirstPort <= reach && r.Mark != holder.Mark {
			return nil, fmt.Errorf("%s overlaps %s, of another mark: %w", r, holder, dataplane.ErrExist)
		}
		if i == 0 || r.FirstPort > reach || r.LastPort > reach {
			reach, holder = max(reach, r.LastPort), r
		}
	}
	var out []dataplane.MarkRule
	last := -1 // index in out of the last range
	for _, r := range rs {
		if r.FirstPort == r.LastPort {
			out = append(out, r)
			continue
		}
		if last >= 0 && r.FirstPort <= out[last].LastPort {
			out[last].LastPort = max(out[last].LastPort, r.LastPort)
			continue
		}
		out = append(out, r)
		last = len(out) - 1
	}
	return out, nil
}

// elementsOf returns the elements of every group of l.
func elementsOf(l logical) ([]dataplane.MarkRule, error) {
	var out []dataplane.MarkRule
	for _, rs := range l {
		e, err := elements(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	return out, nil
}

// SetMarkRules makes table inet lvsctl hold exactly rules, in one nftables transaction, and
// returns how many map elements it added plus deleted, plus the foreign rules it deleted from
// the chain (hand-made ones, and those of the v1 layout, which it replaces by elements in the
// same transaction). Elements already there stay untouched; when nothing differs it sends no
// transaction at all and returns 0. It creates the table, chain, maps and fixed rules when
// absent, and rebuilds the table, in the same single transaction, when someone changed it in
// a way it cannot repair in place (chain or map attributes, chains or maps it did not make).
// A transaction that only repairs structure counts 1, so 0 always means nothing was sent.
// A port may lie inside a range of its mark; overlapping ranges of one VIP, protocol and mark
// share one element (see elements; the count is of elements); ports that overlap with
// different marks are refused.
func (f *Firewall) SetMarkRules(rules []dataplane.MarkRule) (int, error) {
	model, err := desired("mark rule", rules)
	if err != nil {
		return 0, err
	}
	want, err := elementsOf(model)
	if err != nil {
		return 0, fmt.Errorf("nft: mark rules: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.read()
	if err != nil {
		return 0, err
	}
	if !s.tableExists && len(want) == 0 {
		f.remember(model, want)
		return 0, nil
	}

	var tx transaction
	var del []kernelElement
	wanted := make(map[dataplane.MarkRule]bool, len(want))
	for _, r := range want {
		wanted[r] = true
	}
	have := make(map[dataplane.MarkRule]bool, len(s.elements))
	for _, e := range s.elements {
		if s.rebuild || !e.valid || have[e.mark] || !wanted[e.mark] {
			del = append(del, e)
			continue
		}
		have[e.mark] = true
	}
	var add []dataplane.MarkRule
	for _, r := range want {
		if !have[r] {
			add = append(add, r)
		}
	}
	for _, r := range s.foreign {
		// Checked before anything is queued: a batch is sent whole or not at all.
		if r.Handle == 0 {
			return 0, fmt.Errorf("nft: kernel listed a rule in inet %s %s without a handle", TableName, ChainName)
		}
	}

	changed := len(add) + len(del) + len(s.foreign)
	structure := s.rebuild || !s.tableExists || !s.chainExists
	for _, m := range markMaps {
		structure = structure || !s.setExists[m] || !s.ruleExists[m]
	}
	if changed == 0 && !structure {
		f.remember(model, want)
		return 0, nil
	}

	if err := tx.begin(f); err != nil {
		return 0, err
	}
	if s.rebuild {
		// Deleting the table takes its rules, maps and chains with it; the same batch makes
		// it anew, so packets never see a half-built table.
		tx.conn.DelTable(f.table)
	}
	if s.rebuild || !s.tableExists {
		tx.conn.AddTable(f.table)
	}
	if s.rebuild || !s.chainExists {
		tx.conn.AddChain(f.chain)
	}
	sets := map[*markMap]*nftables.Set{}
	for _, m := range markMaps {
		sets[m] = m.newSet(f.table)
		if s.rebuild || !s.setExists[m] {
			if err := tx.conn.AddSet(sets[m], nil); err != nil {
				return 0, fmt.Errorf("nft: add map %s: %w", m.name, err)
			}
		}
	}
	if !s.rebuild {
		for _, r := range s.foreign {
			_ = tx.conn.DelRule(r) // fails only for handle 0, excluded above
		}
		// Deletions first: an element whose mark changes is deleted and added with the same
		// key, and the add must not find the old one.
		for _, m := range markMaps {
			var elems []nftables.SetElement
			for _, e := range del {
				if e.m == m {
					elems = append(elems, e.element())
				}
			}
			if err := tx.elements(sets[m], elems, false); err != nil {
				return 0, err
			}
		}
	}
	tx.excl = true
	if err := tx.rules(sets, add, true); err != nil {
		return 0, err
	}
	for _, m := range markMaps {
		if s.rebuild || !s.ruleExists[m] {
			tx.conn.AddRule(m.newRule(f.chain))
		}
	}
	what := fmt.Sprintf("transaction adding %d and deleting %d elements, deleting %d foreign rules", len(add), len(del), len(s.foreign))
	if err := tx.commit(what); err != nil {
		f.forget()
		return 0, err
	}
	f.remember(model, want)
	return max(changed, 1), nil
}

// remember records what the kernel holds after a successful SetMarkRules: the caller's rules
// and their elements, for ChangeMarkRules and MarkRules.
func (f *Firewall) remember(model logical, elems []dataplane.MarkRule) {
	f.model = model
	f.elems = make(map[dataplane.MarkRule]bool, len(elems))
	for _, e := range elems {
		f.elems[e] = true
	}
}

// forget drops the record when the kernel may hold something else.
func (f *Firewall) forget() { f.model, f.elems = nil, nil }

// ChangeMarkRules deletes del and adds add in one nftables transaction without reading the
// table, so its cost is that of the change, and returns how many map elements it added plus
// deleted. It works from the rules the last SetMarkRules set and the changes since: ranges of
// one VIP, protocol and mark that overlap share an element (see elements), so the elements of
// the rules' VIP and protocol, before and after, tell what to change.
//
// All or nothing: before anything is sent, a del that is not among the rules set, or any call
// before a SetMarkRules succeeded, fails with an error wrapping dataplane.ErrNotExist, and an
// add that is there already or overlaps a rule of another mark with one wrapping
// dataplane.ErrExist. The kernel then checks each element: one that is not there (someone
// deleted it) or is there already fails the transaction the same way, and the kernel is left
// unchanged. The caller then falls back to SetMarkRules, which reads the kernel; until one
// succeeds, ChangeMarkRules refuses with ErrNotExist, as the kernel is not what it knows.
// Deletions happen first, so a rule whose mark changes may be in both lists.
func (f *Firewall) ChangeMarkRules(add, del []dataplane.MarkRule) (int, error) {
	adds, err := desired("add", add)
	if err != nil {
		return 0, err
	}
	dels, err := desired("del", del)
	if err != nil {
		return 0, err
	}
	if len(adds)+len(dels) == 0 {
		return 0, nil
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.model == nil {
		return 0, fmt.Errorf("nft: change mark rules: %w: no SetMarkRules has succeeded, so the rules in the kernel are unknown", dataplane.ErrNotExist)
	}
	// The touched groups as they will be, and the element changes they make.
	next := logical{}
	for g, rs := range dels {
		for _, r := range rs {
			if !slices.Contains(f.model[g], r) {
				return 0, fmt.Errorf("nft: del %s: %w", r, dataplane.ErrNotExist)
			}
		}
		next[g] = slices.DeleteFunc(slices.Clone(f.model[g]), func(r dataplane.MarkRule) bool { return slices.Contains(rs, r) })
	}
	for g, rs := range adds {
		cur, ok := next[g]
		if !ok {
			cur = slices.Clone(f.model[g])
		}
		for _, r := range rs {
			if slices.Contains(cur, r) {
				return 0, fmt.Errorf("nft: add %s: %w", r, dataplane.ErrExist)
			}
		}
		cur = append(cur, rs...)
		slices.SortFunc(cur, compare)
		next[g] = cur
	}
	var addElems, delElems []dataplane.MarkRule
	for g, rs := range next {
		was, err := elements(f.model[g])
		if err != nil {
			return 0, fmt.Errorf("nft: change mark rules: %w", err) // cannot be: SetMarkRules checked
		}
		now, err := elements(rs)
		if err != nil {
			return 0, fmt.Errorf("nft: add: %w", err)
		}
		for _, e := range was {
			if !slices.Contains(now, e) {
				delElems = append(delElems, e)
			}
		}
		for _, e := range now {
			if !slices.Contains(was, e) {
				addElems = append(addElems, e)
			}
		}
	}
	commitModel := func() {
		for g, rs := range next {
			if len(rs) == 0 {
				delete(f.model, g)
			} else {
				f.model[g] = rs
			}
		}
		for _, e := range delElems {
			delete(f.elems, e)
		}
		for _, e := range addElems {
			f.elems[e] = true
		}
	}
	if len(addElems)+len(delElems) == 0 {
		commitModel() // e.g. a port inside a range of the same mark: the map already has it
		return 0, nil
	}

	var tx transaction
	if err := tx.begin(f); err != nil {
		return 0, err
	}
	sets := map[*markMap]*nftables.Set{}
	for _, m := range markMaps {
		sets[m] = m.newSet(f.table)
	}
	if err := tx.rules(sets, delElems, false); err != nil {
		return 0, err
	}
	tx.excl = true
	if err := tx.rules(sets, addElems, true); err != nil {
		return 0, err
	}
	if err := tx.commit(fmt.Sprintf("transaction adding %d and deleting %d elements", len(addElems), len(delElems))); err != nil {
		f.forget() // the kernel is not what the record says
		return 0, err
	}
	commitModel()
	return len(addElems) + len(delElems), nil
}
