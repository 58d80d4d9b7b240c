package auth_test

import (
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/lvsctl/lvsctl/controlplane/auth"
	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/fanout"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestEveryServedMethodHasARole fails when the controller serves an RPC the role table
// does not name (it would be refused to everyone), or when the table names one nobody
// serves (a typo that leaves the real one closed). The server registers what
// controller.Start registers, the same way; and every RPC of every service in the
// lvsctl.v1 protos must be in the table too, registered or not yet.
func TestEveryServedMethodHasARole(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := grpc.NewServer()
	config.NewServer(nil, nil, log).WithFailover(nil).Register(g)
	fanout.New(fanout.Config{Logger: log}).Register(g)
	fleet.NewServer(fleet.New()).Register(g)
	healthpb.RegisterHealthServer(g, health.NewServer())
	reflection.Register(g)

	served := map[string]bool{}
	for svc, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			served["/"+svc+"/"+m.Name] = true
		}
	}
	protoregistry.GlobalFiles.RangeFilesByPackage(protoreflect.FullName("lvsctl.v1"), func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				full := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
				if !served[full] {
					t.Errorf("%s is in the protos but the test server does not serve it: register it as controller.Start does", full)
				}
			}
		}
		return true
	})
	// Make sure the walk above saw the protos at all.
	_ = lvsctlv1.File_lvsctl_v1_config_proto
	if !served[lvsctlv1.ConfigService_Apply_FullMethodName] {
		t.Fatalf("served %v: ConfigService missing", served)
	}
	table := auth.Methods()
	for _, m := range slices.Sorted(maps.Keys(served)) {
		if _, ok := table[m]; !ok {
			t.Errorf("%s is served but not in auth's role table: everyone is refused it; decide its role in controlplane/auth/methods.go", m)
		}
	}
	for m := range table {
		if !served[m] {
			t.Errorf("%s is in the role table but not served: a typo, or a removed RPC", m)
		}
	}
}
