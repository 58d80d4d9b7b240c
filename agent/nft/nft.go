// Package nft keeps the agent's firewall-mark rules in the kernel's nftables: one table,
// `inet lvsctl`, with one fixed base chain, `prerouting`, whose rules match a VIP, a protocol
// and a destination port or range and set the packet's mark, so IPVS firewall-mark services
// see the packets. The agent owns that table and nothing else: it never reads or changes any
// other table. Every change is one nftables transaction.
package nft

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
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
	conn *nftables.Conn
	nsFd int // our duplicate of the namespace fd, or -1
	log  *slog.Logger
	// table and chain are this Firewall's own: the nftables library keeps the pointers it is
	// given in its batch, so Firewalls must not share them.
	table *nftables.Table
	chain *nftables.Chain

	// mu serialises read-diff-write in SetMarkRules, and the Conn's batch with it.
	mu sync.Mutex
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

// kernelRule is one rule found in our chain: rule is valid when the rule's comment decodes and
// its expressions are exactly those the comment's MarkRule generates.
type kernelRule struct {
	rule  *nftables.Rule
	mark  dataplane.MarkRule
	valid bool
}

type state struct {
	tableExists bool
	// chainOK: the chain exists with the hook, priority, type and policy we set.
	chainExists, chainOK bool
	rules                []kernelRule
}

func (f *Firewall) read() (state, error) {
	var s state
	tables, err := f.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return s, classify("list inet tables", err)
	}
	s.tableExists = slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName })
	if !s.tableExists {
		return s, nil
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return s, classify("list inet chains", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName || c.Name != ChainName {
			continue
		}
		s.chainExists = true
		want := f.chain
		s.chainOK = c.Type == want.Type && c.Hooknum != nil && *c.Hooknum == *want.Hooknum &&
			c.Priority != nil && *c.Priority == *want.Priority && c.Policy != nil && *c.Policy == *want.Policy
	}
	if !s.chainExists {
		return s, nil
	}
	rules, err := f.conn.GetRules(f.table, f.chain)
	if err != nil {
		return s, fmt.Errorf("nft: list rules of inet %s %s: %w", TableName, ChainName, err)
	}
	for _, r := range rules {
		kr := kernelRule{rule: r}
		if c, ok := commentOf(r.UserData); ok {
			if m, err := parseKey(c); err == nil && reflect.DeepEqual(r.Exprs, exprs(m)) {
				kr.mark, kr.valid = m, true
			}
		}
		s.rules = append(s.rules, kr)
	}
	return s, nil
}

// MarkRules returns the mark rules in table inet lvsctl, sorted. Rules there that are not
// ours (edited by hand) are left out; SetMarkRules deletes them.
func (f *Firewall) MarkRules() ([]dataplane.MarkRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.read()
	if err != nil {
		return nil, err
	}
	var out []dataplane.MarkRule
	for _, r := range s.rules {
		if r.valid {
			out = append(out, r.mark)
		}
	}
	slices.SortFunc(out, compare)
	return slices.CompactFunc(out, func(a, b dataplane.MarkRule) bool { return a == b }), nil
}

func compare(a, b dataplane.MarkRule) int {
	return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.FirstPort, b.FirstPort), cmp.Compare(a.LastPort, b.LastPort), cmp.Compare(a.Mark, b.Mark))
}

// SetMarkRules makes table inet lvsctl hold exactly rules, in one nftables transaction, and
// returns how many rules it added plus deleted. Rules already there keep their handles; when
// nothing differs it sends no transaction at all. It creates the table and chain when absent,
// deletes rules it cannot account for, and rebuilds the table when someone changed the base
// chain's hook, priority, type or policy.
func (f *Firewall) SetMarkRules(rules []dataplane.MarkRule) (int, error) {
	want := make(map[string]dataplane.MarkRule, len(rules))
	var order []string
	for i, r := range rules {
		if err := validate(r); err != nil {
			return 0, fmt.Errorf("nft: mark rule %d (%s): %w", i, r, err)
		}
		r.VIP = r.VIP.Unmap()
		k := key(r)
		if _, dup := want[k]; !dup {
			want[k] = r
			order = append(order, k)
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.read()
	if err != nil {
		return 0, err
	}

	rebuild := s.chainExists && !s.chainOK
	var del []*nftables.Rule
	have := make(map[string]bool)
	for _, r := range s.rules {
		k := key(r.mark)
		_, wanted := want[k]
		if rebuild || !r.valid || have[k] || !wanted {
			del = append(del, r.rule)
			continue
		}
		have[k] = true
	}
	var add []dataplane.MarkRule
	for _, k := range order {
		if !have[k] {
			add = append(add, want[k])
		}
	}
	if len(add)+len(del) == 0 && !rebuild {
		return 0, nil
	}
	for _, r := range del {
		// Checked before anything is queued: a batch is sent whole or not at all.
		if r.Handle == 0 {
			return 0, fmt.Errorf("nft: kernel listed a rule in inet %s %s without a handle", TableName, ChainName)
		}
	}

	if rebuild {
		// Deleting the table takes its rules and chains with it; the same batch makes it
		// anew, so packets never see a half-built table.
		f.conn.DelTable(f.table)
	} else {
		for _, r := range del {
			_ = f.conn.DelRule(r) // fails only for handle 0, excluded above
		}
	}
	if rebuild || !s.tableExists {
		f.conn.AddTable(f.table)
	}
	if rebuild || !s.chainExists {
		f.conn.AddChain(f.chain)
	}
	for _, r := range add {
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: f.chain, Exprs: exprs(r), UserData: comment(r)})
	}
	if err := f.conn.Flush(); err != nil {
		return 0, classify(fmt.Sprintf("transaction adding %d and deleting %d rules", len(add), len(del)), err)
	}
	return len(add) + len(del), nil
}
