package state

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func TestLoadMissingIsEmpty(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "not", "yet")} {
		s, err := Load(dir)
		if err != nil {
			t.Fatalf("Load(%s): %v", dir, err)
		}
		if len(s.OwnedServices()) != 0 || len(s.OwnedAddresses()) != 0 || s.AppliedRevision() != 0 {
			t.Errorf("Load(%s) of a missing file is not empty", dir)
		}
		if _, ok := s.Desired(); ok {
			t.Errorf("Load(%s) of a missing file has a desired state", dir)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	k16 := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	k17v6 := dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 17}
	vip := Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/32")}
	gw := Address{Interface: "eth1", Prefix: netip.MustParsePrefix("198.51.100.254/24")}
	desired := Desired{
		Revision: 42,
		State: &lvsctlv1.DesiredState{
			Group: &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0"},
			Clusters: []*lvsctlv1.Cluster{{
				Name: "wms", Vips: []string{"192.0.2.10"}, Scheduler: "wlc", Fwmark: 16,
				Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 100}},
			}},
		},
		Role: &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 3},
	}
	for _, err := range []error{
		s.Commit(Changes{RecordServices: []dataplane.ServiceKey{k17v6, k16}, RecordAddresses: []Address{gw}}),
		s.Commit(Changes{RecordServices: []dataplane.ServiceKey{k16}, RecordAddresses: []Address{vip}}),
		s.SetAppliedRevision(41), s.SetDesired(desired),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if want := []dataplane.ServiceKey{k16, k17v6}; !slices.Equal(got.OwnedServices(), want) {
		t.Errorf("services = %v, want %v", got.OwnedServices(), want)
	}
	if want := []Address{vip, gw}; !slices.Equal(got.OwnedAddresses(), want) {
		t.Errorf("addresses = %v, want %v", got.OwnedAddresses(), want)
	}
	if got.AppliedRevision() != 41 {
		t.Errorf("applied revision = %d, want 41", got.AppliedRevision())
	}
	d, ok := got.Desired()
	if !ok {
		t.Fatal("reloaded state has no desired state")
	}
	if d.Revision != 42 || d.Role.GetEpoch() != 3 || d.Role.GetRole() != lvsctlv1.Role_ROLE_ACTIVE {
		t.Errorf("desired revision/role = %d/%v", d.Revision, d.Role)
	}
	if !proto.Equal(d.State, desired.State) {
		t.Errorf("desired state = %v, want %v", d.State, desired.State)
	}
	if !got.OwnsService(k16) || got.OwnsService(dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 16}) {
		t.Error("OwnsService does not tell families apart")
	}

	// Forgetting is saved too.
	if err := got.Commit(Changes{ForgetServices: []dataplane.ServiceKey{k16}, ForgetAddresses: []Address{vip}}); err != nil {
		t.Fatal(err)
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.OwnsService(k16) || again.OwnsAddress(vip) || !again.OwnsAddress(gw) {
		t.Errorf("after forget: services %v addresses %v", again.OwnedServices(), again.OwnedAddresses())
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{JournalName, FileName}; !slices.Equal(names, want) {
		t.Errorf("state directory holds %v, want only %v", names, want)
	}
}

func TestLoadCorrupt(t *testing.T) {
	tests := []struct {
		name, content string
	}{
		{"truncated", `{"version": 1, "services": [`},
		{"not json", "garbage"},
		{"empty file", ""},
		{"wrong version", `{"version": 4}`},
		{"version 2 with a desired state", `{"version": 2, "desired": {"revision": 1}}`},
		{"bad family", `{"version": 1, "services": [{"family": "ipx", "fwmark": 16}]}`},
		{"zero fwmark", `{"version": 1, "services": [{"family": "ipv4", "fwmark": 0}]}`},
		{"bad prefix", `{"version": 1, "addresses": [{"interface": "eth0", "prefix": "192.0.2.300/32"}]}`},
		{"no interface", `{"version": 1, "addresses": [{"interface": "", "prefix": "192.0.2.1/32"}]}`},
		{"unknown field", `{"version": 1, "owned": []}`},
		{"bad desired", `{"version": 1, "desired": {"revision": 1, "state": {"clusters": 7}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Load(dir)
			switch {
			case err == nil:
				t.Errorf("Load of %s = %v services, no error; want an error", tt.name, s.OwnedServices())
			case tt.name == "wrong version":
				// A newer agent's file: refused, not read as far as it goes.
				if errors.Is(err, ErrIntegrity) || s != nil {
					t.Errorf("Load of %s = %v, %v; want no State and an error that is not ErrIntegrity", tt.name, s, err)
				}
			case !errors.Is(err, ErrIntegrity) || s == nil || len(s.OwnedServices())+len(s.OwnedAddresses()) != 0:
				t.Errorf("Load of %s = %v, %v; want a State owning nothing and ErrIntegrity", tt.name, s, err)
			}
		})
	}
}

func TestFailedSaveIsRolledBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A plain file where the directory should be makes every save fail, even for root.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	a := Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/32")}
	if err := s.Commit(Changes{RecordServices: []dataplane.ServiceKey{k}}); err == nil {
		t.Error("recording a service with an unwritable state directory: no error")
	}
	if err := s.Commit(Changes{RecordAddresses: []Address{a}}); err == nil {
		t.Error("recording an address with an unwritable state directory: no error")
	}
	if s.OwnsService(k) || s.OwnsAddress(a) {
		t.Error("an object whose recording failed is still owned in memory")
	}
}

func TestDesiredAbsentParts(t *testing.T) {
	dir := t.TempDir()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetDesired(Desired{Revision: 5}); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := got.Desired()
	if !ok || d.Revision != 5 || d.State != nil || d.Role != nil {
		t.Errorf("Desired() = %+v, %v; want revision 5 with no state or role", d, ok)
	}
	// An empty DesiredState (no clusters) is a desired state, distinct from none.
	if err := s.SetDesired(Desired{Revision: 6, State: &lvsctlv1.DesiredState{}}); err != nil {
		t.Fatal(err)
	}
	got, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ = got.Desired()
	if d.State == nil || !proto.Equal(d.State, &lvsctlv1.DesiredState{}) {
		t.Errorf("empty desired state reloaded as %v", d.State)
	}
}

// TestSetDesiredUnchangedWritesNothing: setting the desired state it already has does not
// write the file (it happens at every resync); any difference does.
func TestSetDesiredUnchangedWritesNothing(t *testing.T) {
	base := Desired{
		Revision: 7,
		State:    &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0"}},
		Role:     &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 3},
	}
	tests := []struct {
		name      string
		edit      func(d *Desired)
		wantWrite bool
	}{
		{"unchanged", func(*Desired) {}, false},
		{"revision", func(d *Desired) { d.Revision = 8 }, true},
		{"state", func(d *Desired) { d.State.Group.VipInterface = "eth1" }, true},
		{"empty state instead of none", func(d *Desired) { d.State = nil }, true},
		{"role", func(d *Desired) { d.Role.Epoch = 4 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "agent")
			s, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetDesired(base); err != nil {
				t.Fatal(err)
			}
			// From here every write fails, even for root: a plain file where the directory was.
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			d := Desired{Revision: base.Revision, State: proto.CloneOf(base.State), Role: proto.CloneOf(base.Role)}
			tt.edit(&d)
			err = s.SetDesired(d)
			if wrote := err != nil; wrote != tt.wantWrite {
				t.Errorf("SetDesired: %v; want a write: %v", err, tt.wantWrite)
			}
		})
	}
}

// TestLoadsFileOfFWMarkServicesOnly: a state.json written by the agent before plain services
// existed (testdata, as that agent wrote it) loads with its services owned and nothing
// damaged, and is written back byte for byte as it was, so an older agent still reads it.
func TestLoadsFileOfFWMarkServicesOnly(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "state-v3-fwmark.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := s.Integrity(); err != nil {
		t.Errorf("Integrity: %v", err)
	}
	want := []dataplane.ServiceKey{{Family: dataplane.IPv4, FWMark: 16}, {Family: dataplane.IPv6, FWMark: 17}}
	if got := s.OwnedServices(); !slices.Equal(got, want) {
		t.Errorf("OwnedServices = %v, want %v", got, want)
	}
	s.mu.Lock()
	again, err := s.encodeLocked()
	s.mu.Unlock()
	if err != nil || string(again) != string(old) {
		t.Errorf("written back as\n%s\n(%v), want it as it was\n%s", again, err, old)
	}
}

// TestPlainServicesRoundTrip: plain services are owned by their whole key (two ports of one
// address are two services), saved, and loaded back beside firewall-mark ones.
func TestPlainServicesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	http := dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80}
	https := http
	https.Port = 443
	dns := dataplane.ServiceKey{Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: netip.MustParseAddr("2001:db8::53"), Port: 53}
	every := dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.SCTP, Address: netip.MustParseAddr("192.0.2.21")} // port 0
	k16 := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{dns, https, http, k16, every}}))
	if s.OwnsService(dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: http.Address, Port: 8080}) {
		t.Error("owns tcp 192.0.2.20:8080, which was never recorded")
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := got.Integrity(); err != nil {
		t.Errorf("Integrity: %v", err)
	}
	want := []dataplane.ServiceKey{k16, http, https, every, dns}
	if !slices.Equal(got.OwnedServices(), want) {
		t.Errorf("OwnedServices = %v, want %v", got.OwnedServices(), want)
	}
	mustDo(t, got.Commit(Changes{ForgetServices: []dataplane.ServiceKey{https}}))
	if got.OwnsService(https) || !got.OwnsService(http) {
		t.Errorf("after forgetting %s: owns it %v, owns %s %v", https, got.OwnsService(https), http, got.OwnsService(http))
	}
}

// TestRefusesBadPlainEntries: an entry that is neither a firewall-mark service nor a whole
// plain one is damage, named by its index.
func TestRefusesBadPlainEntries(t *testing.T) {
	for name, entry := range map[string]string{
		"mark and address":            `{"family": "ipv4", "fwmark": 3, "protocol": "tcp", "address": "192.0.2.1", "port": 80}`,
		"no port":                     `{"family": "ipv4", "protocol": "tcp", "address": "192.0.2.1"}`,
		"unknown protocol":            `{"family": "ipv4", "protocol": "icmp", "address": "192.0.2.1", "port": 80}`,
		"address of the other family": `{"family": "ipv6", "protocol": "tcp", "address": "192.0.2.1", "port": 80}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			data := `{"version": 2, "services": [` + entry + `], "addresses": []}`
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Load(dir)
			if !errors.Is(err, ErrIntegrity) || s == nil || !strings.Contains(err.Error(), "services[0]") {
				t.Fatalf("Load = %v, %v; want a State and ErrIntegrity naming services[0]", s, err)
			}
			if len(s.OwnedServices()) != 0 {
				t.Errorf("owns %v from a damaged entry", s.OwnedServices())
			}
		})
	}
}
