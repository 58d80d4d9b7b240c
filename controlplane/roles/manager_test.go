package roles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// scripted is a machine whose decisions a test scripts; it records what it was fed.
type scripted struct {
	mu     sync.Mutex
	events []Event
	epoch  uint64
	next   time.Time
	on     func(s *scripted, ev Event) Actions // under mu
}

func (s *scripted) Step(now time.Time, ev Event) Actions {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
	if c, ok := ev.(Configured); ok && c.Roles != nil && c.Roles.GetEpoch() > s.epoch {
		s.epoch = c.Roles.GetEpoch()
	}
	if s.on == nil {
		return Actions{}
	}
	return s.on(s, ev)
}

func (s *scripted) Next() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.next }
func (s *scripted) Epoch() uint64   { s.mu.Lock(); defer s.mu.Unlock(); return s.epoch }

// seen returns the events fed so far that match.
func (s *scripted) seen(match func(Event) bool) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, ev := range s.events {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// interfering is the real store, with a write of its own slipped in before the manager's
// first one: the manager's write then meets a store that moved since it read it.
type interfering struct {
	*store.Store
	once   sync.Once
	before func(ctx context.Context) error
}

func (s *interfering) Commit(ctx context.Context, w store.Write) (int64, error) {
	var err error
	s.once.Do(func() {
		if s.before != nil {
			err = s.before(ctx)
		}
	})
	if err != nil {
		return 0, err
	}
	return s.Store.Commit(ctx, w)
}

func put(t *testing.T, st *store.Store, puts map[string]proto.Message, deletes ...string) int64 {
	t.Helper()
	ctx := context.Background()
	_, head, err := st.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := st.Commit(ctx, store.Write{Head: head, Puts: puts, Deletes: deletes})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func twoDirectors(name string) *lvsctlv1.DirectorGroup {
	return &lvsctlv1.DirectorGroup{Name: name, VipInterface: "eth0", Directors: []*lvsctlv1.Director{
		{Name: "dir-a", Priority: 200, Address: "192.0.2.1"}, {Name: "dir-b", Priority: 100, Address: "192.0.2.2"}}}
}

type managerRig struct {
	st       *store.Store
	m        *Manager
	mu       sync.Mutex
	machines map[string]*scripted
	script   func(s *scripted, ev Event) Actions
}

func startManager(t *testing.T, st *store.Store, wrap func(*store.Store) Store, script func(s *scripted, ev Event) Actions) *managerRig {
	t.Helper()
	r := &managerRig{st: st, machines: map[string]*scripted{}, script: script}
	var s Store = st
	if wrap != nil {
		s = wrap(st)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("LVSCTL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	r.m = NewManager(ManagerConfig{Store: s, Logger: log, newMachine: func(group string) machine {
		r.mu.Lock()
		defer r.mu.Unlock()
		mc := &scripted{on: r.script}
		r.machines[group] = mc
		return mc
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

func (r *managerRig) machine(t *testing.T, group string) *scripted {
	t.Helper()
	var mc *scripted
	waitFor(t, "the machine of "+group, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		mc = r.machines[group]
		return mc != nil
	})
	return mc
}

// waitFor polls cond; the 10 s bound only stops a hung test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isWritten(ev Event) bool { _, ok := ev.(Written); return ok }

// TestManagerFeedsTheMachineAndStoresItsDecision: a group's machine gets the stored group
// and roles, what its directors' streams say (and nothing of other directors), announces its
// epoch at once, and its decision is stored with a compare-and-swap, even when the store
// moved for another reason in between; the machine then hears Written and the stored roles.
func TestManagerFeedsTheMachineAndStoresItsDecision(t *testing.T) {
	st := storetest.Start(t)
	put(t, st, map[string]proto.Message{store.GroupKey("edge-1"): twoDirectors("edge-1"),
		store.RolesKey("edge-1"): &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 5, Reason: "initial"}})
	var decided *lvsctlv1.GroupRoles
	script := func(s *scripted, ev Event) Actions {
		if r, ok := ev.(Reported); ok && r.Director == "dir-b" && decided == nil {
			decided = &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 100, Reason: "takeover", Previous: "dir-a"}
			s.epoch = 100
			return Actions{Write: decided}
		}
		return Actions{}
	}
	wrap := func(st *store.Store) Store {
		return &interfering{Store: st, before: func(ctx context.Context) error {
			_, head, err := st.Head(ctx)
			if err != nil {
				return err
			}
			_, err = st.Commit(ctx, store.Write{Head: head, Puts: map[string]proto.Message{store.GroupKey("other"): twoDirectors("other")}})
			return err
		}}
	}
	r := startManager(t, st, wrap, script)
	mc := r.machine(t, "edge-1")
	waitFor(t, "epoch 5 announced", func() bool { return r.m.Epoch("edge-1") == 5 })
	if c := mc.seen(func(ev Event) bool { _, ok := ev.(Configured); return ok }); len(c) == 0 ||
		c[0].(Configured).Group.GetName() != "edge-1" || c[0].(Configured).Roles.GetActive() != "dir-a" || c[0].(Configured).Revision == 0 {
		t.Fatalf("first events %v, want Configured with the stored group, roles and revision", c)
	}

	r.m.Heard("nobody")
	r.m.Heard("dir-b")
	r.m.Reported("dir-b", &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 5, Role: lvsctlv1.Role_ROLE_STANDBY})
	waitFor(t, "the decision stored", func() bool { return len(mc.seen(isWritten)) > 0 })
	w := mc.seen(isWritten)
	if len(w) != 1 || w[0].(Written).Err != nil || !proto.Equal(w[0].(Written).Roles, decided) {
		t.Fatalf("Written events %v, want one, without error, of the decided roles", w)
	}
	if got := r.m.Epoch("edge-1"); got != 100 {
		t.Errorf("Epoch = %d, want the decided 100", got)
	}
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(snap.Roles["edge-1"], decided) {
		t.Errorf("stored roles %v, want %v", snap.Roles["edge-1"], decided)
	}
	if snap.Groups["other"] == nil {
		t.Error("the interfering write is not stored: the test did not make the store move")
	}
	waitFor(t, "the stored roles fed back", func() bool {
		return len(mc.seen(func(ev Event) bool { c, ok := ev.(Configured); return ok && c.Roles.GetEpoch() == 100 })) > 0
	})
	for _, ev := range mc.seen(func(Event) bool { return true }) {
		switch e := ev.(type) {
		case Heard:
			if e.Director != "dir-b" {
				t.Errorf("edge-1's machine heard of %q", e.Director)
			}
		case Reported:
			if e.Director != "dir-b" || e.Status.GetEpoch() != 5 {
				t.Errorf("edge-1's machine got report %+v", e)
			}
		}
	}
}

// TestManagerWriteLosesToAChangedAssignment: when the group's roles changed since the
// machine decided, its write is refused and it hears so; the store keeps the other write.
func TestManagerWriteLosesToAChangedAssignment(t *testing.T) {
	st := storetest.Start(t)
	put(t, st, map[string]proto.Message{store.GroupKey("edge-1"): twoDirectors("edge-1"),
		store.RolesKey("edge-1"): &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 5}})
	other := &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 50, Reason: "another writer"}
	wrap := func(st *store.Store) Store {
		return &interfering{Store: st, before: func(ctx context.Context) error {
			_, head, err := st.Head(ctx)
			if err != nil {
				return err
			}
			_, err = st.Commit(ctx, store.Write{Head: head, Puts: map[string]proto.Message{store.RolesKey("edge-1"): other}})
			return err
		}}
	}
	decided := false
	r := startManager(t, st, wrap, func(s *scripted, ev Event) Actions {
		if _, ok := ev.(Heard); ok && !decided {
			decided = true
			return Actions{Write: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 40, Reason: "takeover"}}
		}
		return Actions{}
	})
	mc := r.machine(t, "edge-1")
	waitFor(t, "loaded", func() bool { return r.m.Epoch("edge-1") == 5 })
	r.m.Heard("dir-b")
	waitFor(t, "the write's outcome", func() bool { return len(mc.seen(isWritten)) > 0 })
	w := mc.seen(isWritten)
	if len(w) != 1 || !errors.Is(w[0].(Written).Err, store.ErrConflict) {
		t.Fatalf("Written events %v, want one with ErrConflict", w)
	}
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(snap.Roles["edge-1"], other) {
		t.Errorf("stored roles %v, want the other writer's %v", snap.Roles["edge-1"], other)
	}
}

// TestManagerFailoverRequests: a request reaches the group's machine, which may answer it
// later (here at a Tick it asked for); an unknown group is refused; a request pending when
// its group is deleted is answered.
func TestManagerFailoverRequests(t *testing.T) {
	st := storetest.Start(t)
	put(t, st, map[string]proto.Message{store.GroupKey("edge-1"): twoDirectors("edge-1"), store.GroupKey("edge-2"): twoDirectors("edge-2"),
		store.RolesKey("edge-1"): &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 5}})
	r := startManager(t, st, nil, func(s *scripted, ev Event) Actions {
		switch e := ev.(type) {
		case FailoverRequested:
			if e.To == "dir-b" {
				s.next = time.Now().Add(20 * time.Millisecond)
				s.epoch = 7
			}
		case Tick:
			s.next = time.Time{}
			for _, req := range s.events {
				if f, ok := req.(FailoverRequested); ok && f.To == "dir-b" {
					return Actions{Replies: []Reply{{ID: f.ID, Resp: &lvsctlv1.FailoverResponse{
						Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 7}, Previous: "dir-a"}}}}
				}
			}
		}
		return Actions{}
	})
	ctx := context.Background()
	resp, err := r.m.Failover(ctx, "edge-1", "dir-b")
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRoles().GetActive() != "dir-b" || resp.GetPrevious() != "dir-a" {
		t.Errorf("reply %v, want dir-b ACTIVE after dir-a", resp)
	}
	if ticks := r.machine(t, "edge-1").seen(func(ev Event) bool { _, ok := ev.(Tick); return ok }); len(ticks) == 0 {
		t.Error("the reply came without the Tick the machine asked for")
	}
	if _, err := r.m.Failover(ctx, "nope", ""); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("failover of an unknown group: %v, want ErrUnknownGroup", err)
	}

	// edge-2's machine never answers; deleting the group answers for it.
	errc := make(chan error, 1)
	go func() { _, err := r.m.Failover(ctx, "edge-2", "dir-a"); errc <- err }()
	mc2 := r.machine(t, "edge-2")
	waitFor(t, "the request at edge-2's machine", func() bool {
		return len(mc2.seen(func(ev Event) bool { _, ok := ev.(FailoverRequested); return ok })) > 0
	})
	put(t, st, nil, store.GroupKey("edge-2"))
	select {
	case err := <-errc:
		if !errors.Is(err, ErrUnknownGroup) {
			t.Errorf("pending failover of a deleted group: %v, want ErrUnknownGroup", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failover pending on a deleted group was never answered")
	}
	if got := mc2.seen(func(ev Event) bool { c, ok := ev.(Configured); return ok && c.Group == nil }); len(got) != 1 {
		t.Errorf("edge-2's machine got %d Configured{Group: nil}, want 1", len(got))
	}
	if r.m.Epoch("edge-2") != 0 {
		t.Error("a deleted group still has an epoch")
	}
}

// BenchmarkManagerHeard: the cost of one heartbeat to the role logic, through the manager's
// loop to the real machine of its group, with 500 groups of two directors, all connected.
func BenchmarkManagerHeard(b *testing.B) {
	st := storetest.Start(b)
	puts := map[string]proto.Message{}
	var names []string
	for g := range 500 {
		grp := twoDirectors(fmt.Sprintf("edge-%03d", g))
		for i, d := range grp.Directors {
			d.Name = fmt.Sprintf("dir-%04d", 2*g+i)
			names = append(names, d.Name)
		}
		puts[store.GroupKey(grp.Name)] = grp
		puts[store.RolesKey(grp.Name)] = &lvsctlv1.GroupRoles{Group: grp.Name, Active: grp.Directors[0].Name, Epoch: 1}
	}
	ctx := context.Background()
	_, head, err := st.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Commit(ctx, store.Write{Head: head, Puts: puts}); err != nil {
		b.Fatal(err)
	}
	m := NewManager(ManagerConfig{Store: st, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for m.Epoch("edge-499") == 0 {
		time.Sleep(time.Millisecond)
	}
	for _, n := range names {
		m.Reported(n, &lvsctlv1.RoleStatus{Epoch: 1})
	}
	b.ResetTimer()
	for i := range b.N {
		m.Heard(names[i%len(names)])
	}
	// The last events have been taken by the loop, not yet all stepped: one more request
	// through the loop waits for them.
	_, _ = m.Failover(ctx, "nope", "")
}

// newTestLoop is a loop of one group, edge-1 (dir-a, dir-b), whose scripted machine asks for
// a Tick now; nothing runs it: the test calls its methods.
func newTestLoop(t *testing.T) (*loop, *scripted) {
	t.Helper()
	mc := &scripted{on: func(s *scripted, ev Event) Actions {
		if _, ok := ev.(Tick); ok {
			s.next = time.Time{}
		}
		return Actions{}
	}}
	m := NewManager(ManagerConfig{Logger: slog.New(slog.DiscardHandler), newMachine: func(group string) machine {
		if group == "edge-1" {
			return mc
		}
		return &scripted{}
	}})
	l := newLoop(m)
	l.configure(context.Background(), configUpdate{full: true, revision: 1, groups: map[string]*groupConfig{
		"edge-1": {group: twoDirectors("edge-1"), roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 1}}}})
	mc.mu.Lock()
	mc.next = time.Now()
	mc.mu.Unlock()
	l.step("edge-1", Heard{Director: "dir-b"}) // makes the loop take the machine's Next
	return l, mc
}

// TestManagerStepsQueuedHeardsBeforeTick: a Heard queued when the timer fires is stepped
// before the Tick, so the decision at the Tick knows the director was just heard.
func TestManagerStepsQueuedHeardsBeforeTick(t *testing.T) {
	l, mc := newTestLoop(t)
	l.m.Heard("dir-a")
	l.onTimer()
	var order []string
	for _, ev := range mc.seen(func(ev Event) bool {
		h, isHeard := ev.(Heard)
		_, isTick := ev.(Tick)
		return (isHeard && h.Director == "dir-a") || isTick
	}) {
		order = append(order, fmt.Sprintf("%T", ev))
	}
	if len(order) < 2 || order[0] != "roles.Heard" || order[1] != "roles.Tick" {
		t.Fatalf("events %v, want dir-a's Heard before the Tick", order)
	}
}

// TestManagerHeardNeverBlocks: Heards of a loop that does not keep up are coalesced per
// director and never block the caller (the hub's receive loop); none is lost.
func TestManagerHeardNeverBlocks(t *testing.T) {
	l, mc := newTestLoop(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3 * cap(l.m.agents) {
			l.m.Heard("dir-a")
			l.m.Heard(fmt.Sprintf("dir-%05d", i))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // hang guard
		t.Fatal("Heard blocked on a full queue")
	}
	if n := len(l.m.agents); n != cap(l.m.agents) {
		t.Errorf("%d events queued, want the queue full (%d)", n, cap(l.m.agents))
	}
	l.drainAgents()
	if got, want := len(l.connected), 3*cap(l.m.agents)+1; got != want { // dir-a and the others
		t.Errorf("%d directors heard, want %d", got, want)
	}
	if got := len(mc.seen(func(ev Event) bool { h, ok := ev.(Heard); return ok && h.Director == "dir-a" })); got != 1 {
		t.Errorf("dir-a's machine stepped %d Heards of dir-a, want 1 (coalesced)", got)
	}
	// Once stepped, the next Heard of dir-a is queued again.
	l.m.Heard("dir-a")
	if len(l.m.agents) != 1 {
		t.Errorf("%d events queued after a new Heard, want 1", len(l.m.agents))
	}
}

// TestManagerFeedsARemovedDirectorToItsFormerGroup: a director removed from its group (a
// removed ACTIVE, whose release the group's handover waits for) is still heard by that
// group's machine; once it joins another group, that one hears it instead.
func TestManagerFeedsARemovedDirectorToItsFormerGroup(t *testing.T) {
	l, mc := newTestLoop(t)
	onlyB := twoDirectors("edge-1")
	onlyB.Directors = onlyB.Directors[1:]
	l.configure(context.Background(), configUpdate{revision: 2, groups: map[string]*groupConfig{"edge-1": {group: onlyB}}})
	l.agent(agentEvent{director: "dir-a", ev: Reported{Director: "dir-a", Status: &lvsctlv1.RoleStatus{Epoch: 1}}})
	fromA := func(ev Event) bool { r, ok := ev.(Reported); return ok && r.Director == "dir-a" }
	if got := mc.seen(fromA); len(got) != 1 {
		t.Fatalf("edge-1's machine got %d reports of the removed dir-a, want 1", len(got))
	}
	l.configure(context.Background(), configUpdate{revision: 3, groups: map[string]*groupConfig{"edge-2": {group: twoDirectors("edge-2")}}})
	l.agent(agentEvent{director: "dir-a", ev: Reported{Director: "dir-a", Status: &lvsctlv1.RoleStatus{Epoch: 1}}})
	if got := mc.seen(fromA); len(got) != 1 {
		t.Errorf("edge-1's machine got %d reports of dir-a after it joined edge-2, want still 1", len(got))
	}
}

// TestFailoverWaitsForTheStoreItWasAskedAt: a failover asked at a store revision the
// manager has not followed to yet (a group applied a moment before) waits for it, rather
// than answer "no such group"; then it reaches the group's machine.
func TestFailoverWaitsForTheStoreItWasAskedAt(t *testing.T) {
	l, _ := newTestLoop(t) // followed to revision 1: edge-1 only
	r := &request{group: "edge-2", ev: FailoverRequested{ID: 7, To: "dir-b"}, reply: make(chan Reply, 1), atLeast: 3}
	l.request(r)
	select {
	case rep := <-r.reply:
		t.Fatalf("answered before the store was followed to revision 3: %+v", rep)
	default:
	}
	l.configure(context.Background(), configUpdate{revision: 3, groups: map[string]*groupConfig{
		"edge-2": {group: twoDirectors("edge-2"), roles: &lvsctlv1.GroupRoles{Group: "edge-2", Active: "dir-a", Epoch: 2}}}})
	l.unpark()
	if _, ok := l.pending[7]; !ok {
		t.Errorf("the request did not reach edge-2's machine once followed (pending %v)", l.pending)
	}
	select {
	case rep := <-r.reply:
		t.Errorf("answered %+v; the scripted machine answers nothing", rep)
	default:
	}
	// A group that is still unknown once followed: ErrUnknownGroup, as before.
	u := &request{group: "nope", ev: FailoverRequested{ID: 8}, reply: make(chan Reply, 1), atLeast: 3}
	l.request(u)
	if rep := <-u.reply; !errors.Is(rep.Err, ErrUnknownGroup) {
		t.Errorf("unknown group: %v, want ErrUnknownGroup", rep.Err)
	}
}

// gatedStore is a Store whose Commits wait to be let through one by one; it records what
// each one wrote.
type gatedStore struct {
	Store
	mu    sync.Mutex
	wrote []*lvsctlv1.GroupRoles
	gate  chan struct{}
}

func (s *gatedStore) Commit(ctx context.Context, w store.Write) (int64, error) {
	s.mu.Lock()
	s.wrote = append(s.wrote, w.Puts[store.RolesKey("edge-1")].(*lvsctlv1.GroupRoles))
	s.mu.Unlock()
	select {
	case <-s.gate:
		return 10, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *gatedStore) commits() []*lvsctlv1.GroupRoles {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*lvsctlv1.GroupRoles(nil), s.wrote...)
}

// TestManagerQueuesADecisionBehindTheWriteInFlight: the machine sees its write in the store
// before Commit returns (the watch won the race) and decides the next assignment, as a
// handover's new ACTIVE once the old one released. That decision is written once the first
// Commit returns, never dropped (the lab's planned failover hung on it for 60 s, both
// directors STANDBY) and never written alongside it.
func TestManagerQueuesADecisionBehindTheWriteInFlight(t *testing.T) {
	l, _ := newTestLoop(t)
	st := &gatedStore{gate: make(chan struct{})}
	l.m.cfg.Store = st
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := &lvsctlv1.GroupRoles{Group: "edge-1", Epoch: 6, Reason: ReasonFailover, Previous: "dir-a", HandoverTo: "dir-b"}
	promote := &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 8, Reason: ReasonFailover, Previous: "dir-a"}
	l.startWrite(ctx, "edge-1", release)
	waitFor(t, "the first commit", func() bool { return len(st.commits()) == 1 })
	l.startWrite(ctx, "edge-1", promote) // decided while the release is in flight
	time.Sleep(50 * time.Millisecond)
	if got := st.commits(); len(got) != 1 {
		t.Fatalf("%d commits while the first is in flight, want 1 (the second waits)", len(got))
	}
	st.gate <- struct{}{}
	l.writtenResult(ctx, <-l.m.written)
	waitFor(t, "the queued commit", func() bool { return len(st.commits()) == 2 })
	if got := st.commits()[1]; !proto.Equal(got, promote) {
		t.Fatalf("second commit %v, want the queued %v", got, promote)
	}
	if w := l.writes["edge-1"]; w == nil || !proto.Equal(w.roles, promote) {
		t.Fatalf("write in flight %v, want the promotion", w)
	}
	st.gate <- struct{}{}
	l.writtenResult(ctx, <-l.m.written)
	if len(l.writes) != 0 || len(l.queued) != 0 {
		t.Errorf("after both: %d writes in flight, %d queued; want none", len(l.writes), len(l.queued))
	}
}
