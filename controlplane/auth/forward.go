package auth

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/metadata"

	"github.com/lvsctl/lvsctl/pki"
)

// Several controllers (issue 11): a controller that does not lead relays the agent
// streams, status and failover calls to the leader with its own certificate (OU
// controller), naming the caller it relays in metadata. The leader takes that identity, as
// authenticated by the relaying controller, and checks it against the method table as if
// the caller had called it directly; a director's relayed stream still speaks only for
// that director. Trusting a controller so costs nothing: it holds the etcd credentials, and
// so every director's desired state, anyway. Nobody else's certificate may forward.

// Metadata keys of a relayed call.
const (
	forwardedName = "lvsctl-forwarded-for"
	forwardedRole = "lvsctl-forwarded-role"
)

// ForwardFor returns the outgoing context of a call relayed on behalf of id.
func ForwardFor(ctx context.Context, id Identity) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedName, id.Name, forwardedRole, id.Role.String())
}

// isController: the certificate is a controller's (its one OU is "controller").
func isController(cert *x509.Certificate) bool {
	ous := cert.Subject.OrganizationalUnit
	return len(ous) == 1 && ous[0] == pki.OUController
}

// forwarded reads the identity a controller relays. ok is false when the call names none.
func forwarded(ctx context.Context, relay *x509.Certificate) (Identity, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	names, roles := md.Get(forwardedName), md.Get(forwardedRole)
	if len(names) == 0 && len(roles) == 0 {
		return Identity{}, false, nil
	}
	if len(names) != 1 || len(roles) != 1 {
		return Identity{}, true, refuse(ErrUnauthenticated, nil, "controller %s relayed a call with %d names and %d roles: want one of each", clip(relay.Subject.CommonName), len(names), len(roles))
	}
	role, err := ParseRole(roles[0])
	if err != nil {
		return Identity{}, true, refuse(ErrUnauthenticated, err, "controller %s relayed a call: %v", clip(relay.Subject.CommonName), err)
	}
	name := names[0]
	if name == "" || len(name) > MaxNameBytes || !printable(name) || name == InsecureName {
		return Identity{}, true, refuse(ErrUnauthenticated, nil, "controller %s relayed a call for an unusable name %q", clip(relay.Subject.CommonName), clip(name))
	}
	return Identity{Name: name, Role: role}, true, nil
}
