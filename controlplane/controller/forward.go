package controller

import (
	"context"

	"github.com/lvsctl/lvsctl/controlplane/auth"
)

// forwardIdentity is the context of a call relayed to the leader. The relay calls with this
// controller's own credentials (on --insecure, the leader's loopback caller is trusted as
// before); the caller's identity goes along for the leader's authorization and audit
// (auth.ForwardedFor).
func forwardIdentity(ctx context.Context) context.Context {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return ctx
	}
	return auth.ForwardFor(ctx, id)
}
