// Package importer turns the configurations of the tools LVS sites run today (keepalived.conf,
// ipvsadm-save output, and the firewall marks of iptables-save, nft list ruleset or a shell
// script of iptables lines) into lvsctl objects, and lvsctl objects back into them (export).
// Every function is pure: bytes in, objects and warnings out; nothing talks to a controller.
//
// It never guesses silently: whatever it does not carry over is a Warning naming the file and
// line of the setting and why. The model says firewall-mark clusters, plain services
// (VIP:port), scheduler flags, one-packet scheduling, real server ports (NAT) and thresholds,
// tunnel types (one per cluster), sorry servers and director groups; sorry_server_inhibit and
// the like are
// warnings; when the model
// grows they become new cases of the mapping functions here (kaImport.cluster, ipvsadm's
// service), not a rewrite.
package importer

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Warning is a setting that was not carried over, or a note about how one was.
type Warning struct {
	File string
	Line int
	What string
}

// String formats the warning as the contract says: FILE:LINE: what and why.
func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.What) }

// Imported is one object and where it came from.
type Imported struct {
	Object *lvsctlv1.Object
	// File and Line: the block it was made from (the first, when several files gave it).
	File string
	Line int
	// From says what it was made from, e.g. "virtual_server fwmark 1".
	From string
}

// Result is what an import found.
type Result struct {
	Objects  []Imported
	Warnings []Warning
}

// ErrNothing is returned when the input holds nothing that could be imported.
var ErrNothing = errors.New("nothing to import")

// warn adds a warning once: a file included by every director's keepalived.conf says the
// same thing each time.
func (r *Result) warn(file string, line int, format string, args ...any) {
	w := Warning{File: file, Line: line, What: fmt.Sprintf(format, args...)}
	for _, o := range r.Warnings {
		if o == w {
			return
		}
	}
	r.Warnings = append(r.Warnings, w)
}

// Manifest prints the objects as YAML documents that `lvsctl apply -f` takes unchanged, each
// headed by a comment naming its source.
func (r *Result) Manifest() ([]byte, error) {
	var b bytes.Buffer
	for i, o := range r.Objects {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "# imported from %s:%d (%s)\n", o.File, o.Line, o.From)
		y, err := manifest.Marshal([]*lvsctlv1.Object{o.Object}, manifest.YAML)
		if err != nil {
			return nil, err
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// sortObjects puts groups first (apply needs them before their clusters in a new store),
// then fwmark clusters by mark, then plain services in the order read.
func (r *Result) sortObjects() {
	sort.SliceStable(r.Objects, func(i, j int) bool {
		a, b := r.Objects[i].Object, r.Objects[j].Object
		if (a.GetGroup() != nil) != (b.GetGroup() != nil) {
			return a.GetGroup() != nil
		}
		return clusterLess(a.GetCluster(), b.GetCluster())
	})
}

// clusterLess orders fwmark clusters by mark, then plain services (among themselves, they
// keep their order: the file's).
func clusterLess(a, b *lvsctlv1.Cluster) bool {
	if (a.GetService() != nil) != (b.GetService() != nil) {
		return a.GetService() == nil
	}
	return a.GetService() == nil && a.GetFwmark() < b.GetFwmark()
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// Label makes a DNS label (an lvsctl name) of a keepalived or file name: VI_1 -> vi-1.
func Label(s string) string {
	s = notLabel.ReplaceAllString(strings.ToLower(strings.ReplaceAll(s, "_", "-")), "-")
	s = strings.Trim(s, "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

func protoEqual(a, b proto.Message) bool { return proto.Equal(a, b) }
