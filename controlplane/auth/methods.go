package auth

import (
	"maps"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// methods is THE table: every RPC the controller serves and the role it needs. An RPC not
// in it is refused to everyone (authorize). The generated names are constants, so a
// renamed RPC fails to compile here rather than being silently closed.
var methods = map[string]Role{
	// Reading the configuration, its history and the fleet's status.
	lvsctlv1.ConfigService_Get_FullMethodName:             Viewer,
	lvsctlv1.ConfigService_List_FullMethodName:            Viewer,
	lvsctlv1.ConfigService_History_FullMethodName:         Viewer,
	lvsctlv1.StatusService_List_FullMethodName:            Viewer,
	lvsctlv1.StatusService_Watch_FullMethodName:           Viewer,
	lvsctlv1.StatusService_ListControllers_FullMethodName: Viewer,
	// Operating what is configured: drain/enable a real server, move the ACTIVE role.
	lvsctlv1.ConfigService_Drain_FullMethodName:    Operator,
	lvsctlv1.ConfigService_Failover_FullMethodName: Operator,
	// Changing the configuration. Apply's dry run needs admin too: it validates against the
	// whole store and shows the plan, as kubectl diff needs the rights of apply.
	lvsctlv1.ConfigService_Apply_FullMethodName:    Admin,
	lvsctlv1.ConfigService_Delete_FullMethodName:   Admin,
	lvsctlv1.ConfigService_Rollback_FullMethodName: Admin,
	// The agent stream: directors only, each as itself (SpeakFor checks the Hello).
	lvsctlv1.AgentService_Connect_FullMethodName: Director,
	// Health: anyone with an identity, agents and load balancers' probes with a certificate.
	healthpb.Health_Check_FullMethodName: Any,
	healthpb.Health_Watch_FullMethodName: Any,
	healthpb.Health_List_FullMethodName:  Any,
	// Reflection describes the API (grpcurl): what a viewer may see anyway.
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      Viewer,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: Viewer,
}

// Methods returns a copy of the table: full gRPC method name -> the role it needs.
func Methods() map[string]Role { return maps.Clone(methods) }

// Required returns the role a method needs, false if it is not in the table (refused).
func Required(method string) (Role, bool) {
	r, ok := methods[method]
	return r, ok
}
