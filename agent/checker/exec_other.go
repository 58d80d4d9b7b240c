//go:build !unix

package checker

import (
	"context"
	"errors"
	"net/netip"
	"runtime"

	"github.com/lvsctl/lvsctl/health"
)

func probeExec(context.Context, netip.AddrPort, health.Spec) error {
	return errors.New("exec checks are not implemented on " + runtime.GOOS)
}
