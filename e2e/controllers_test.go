package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestTwoControllersSideBySide: two controllers with their own data dirs, listen addresses and
// etcd ports run on one machine, each with its own state; a third that reuses an etcd port
// fails at start, naming the address, instead of sharing or stealing it.
func TestTwoControllersSideBySide(t *testing.T) {
	one := newController(t)
	two := newController(t)
	ctx := context.Background()
	c1, c2 := dial(t, one.cfg.Listen), dial(t, two.cfg.Listen)
	if _, err := c1.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)}); err != nil {
		t.Fatal(err)
	}
	l2, err := c2.config.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER})
	if err != nil {
		t.Fatal(err)
	}
	if len(l2.GetObjects()) != 0 {
		t.Errorf("the second controller sees the first one's clusters: %v", l2.GetObjects())
	}

	clash := one.cfg
	clash.DataDir = filepath.Join(t.TempDir(), "etcd")
	clash.Listen = freePort(t)
	_, err = controller.Start(ctx, clash)
	if err == nil {
		t.Fatal("a controller reusing another's etcd ports started")
	}
	if !errors.Is(err, store.ErrEmbeddedStart) || !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), one.cfg.EtcdClientURL) {
		t.Errorf("error %q should say the embedded etcd could not start, address in use, naming %s", err, one.cfg.EtcdClientURL)
	}
}
