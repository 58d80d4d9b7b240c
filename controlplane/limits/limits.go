// Package limits holds, in one place, every bound lvsctl puts on what an operator or a
// client may send: the size of a message and of a manifest, how many objects one apply
// holds, how many real servers a cluster and how many clusters a director group hold, and
// the length of every string field. The controller enforces them on every request (package
// validate, package config); lvsctl checks the same values first, for early feedback.
//
// The values are chosen so that an operator with 10,000 clusters of 10 real servers each in
// one director group, applied in one manifest (what the scale tests do), never meets one,
// while a hostile or broken client cannot make the controller spend memory or time out of
// proportion to a real configuration. docs/design.md section 6 lists them.
package limits

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Sizes of what travels over the wire and what lvsctl reads.
const (
	// MaxMessageBytes is the largest gRPC message a component sends or receives: an apply of
	// 10,000 clusters of 10 real servers is about 5 MiB, a full snapshot for an agent
	// about as much.
	MaxMessageBytes = 64 << 20
	// MaxManifestBytes is the largest manifest lvsctl reads and manifest.Parse takes: a
	// 10,000-cluster manifest in YAML is about 8 MiB.
	MaxManifestBytes = 32 << 20
	// MaxManifestDepth bounds how deeply a manifest's mappings and lists nest; the schema's
	// deepest field (reals[i].health.command[j]) is 5 levels down.
	MaxManifestDepth = 32
	// MinAliasBudget and AliasBudgetFactor bound what YAML aliases (*name) may add to a
	// document: at most AliasBudgetFactor times the nodes written, and never less than
	// MinAliasBudget. A manifest that reuses an anchor for every cluster's reals stays far
	// inside; a "billion laughs" (aliases of aliases, each doubling) is refused once it has
	// produced that many nodes, long before it costs memory.
	MinAliasBudget    = 100_000
	AliasBudgetFactor = 4
)

// Counts per request and per object.
const (
	// MaxObjectsPerApply is how many objects one apply holds (manifest documents, RPC
	// objects): twice the 10,000-cluster applies of the scale tests. The embedded etcd
	// takes 65,536 operations in one transaction (store.EmbeddedLimits): 20,000 objects, their
	// history entries and the trimming of old entries fit.
	MaxObjectsPerApply = 20_000
	// MaxClustersPerGroup is how many clusters one director group holds: every director of
	// the group applies all of them (IPVS services, nftables elements, a snapshot message).
	MaxClustersPerGroup = 20_000
	// MaxDirectorsPerGroup is how many directors one group lists. Each heartbeats every
	// other one, so a real group is a handful (the traffic grows with the square), but the
	// fleet benchmarks put 100-1,000 directors in one group (docs/benchmarks.md) and a
	// group of many identical directors is a valid way to spread one site's clusters.
	MaxDirectorsPerGroup = 1024
	// MaxRealsPerCluster is how many real servers one cluster lists; every one of them is
	// health-checked from every director of the group.
	MaxRealsPerCluster = 1000
	// MaxVIPsPerCluster and MaxPortsPerCluster bound a cluster's VIPs and port entries; the
	// director's nftables map holds one element per VIP and port entry.
	MaxVIPsPerCluster  = 256
	MaxPortsPerCluster = 64
	// MaxCommandArgs is how many arguments an exec health check's command has.
	MaxCommandArgs = 64
)

// Lengths of string fields, in bytes.
const (
	// MaxNameLen is a name's length: clusters, director groups and directors are DNS labels
	// (RFC 1123), which also fits a certificate's CommonName (64).
	MaxNameLen = 63
	// MaxIfNameLen is IFNAMSIZ-1: the kernel refuses longer interface names.
	MaxIfNameLen = 15
	// MaxAddressLen bounds an address as written (the longest IPv6 text with a prefix
	// length is 49 bytes).
	MaxAddressLen = 64
	// MaxShortString bounds the fields that take one word or a short expression: a
	// scheduler, a check kind, onFailure, udpMode, expect (a status range like 200-399).
	MaxShortString = 64
	// MaxHostLen is a DNS name's length (an https check's serverName).
	MaxHostLen = 253
	// MaxPathLen bounds an http check's path and body and an rtsp check's url: a probe
	// sends them on every interval to every real server.
	MaxPathLen = 2048
	// MaxCommandArgLen bounds one argument of an exec check's command.
	MaxCommandArgLen = 4096
)

// MaxErrors is how many problems one refusal lists (per object for the controller, per
// manifest for lvsctl); the rest are counted: an operator fixes the first ones and runs again,
// and a broken input cannot make an answer as large as itself.
const MaxErrors = 100

// MaxEcho is how much of a refused value an error message repeats: an operator recognises
// the value from its beginning, and a hostile one cannot make the controller's answer (or
// its log) as large as the request.
const MaxEcho = 64

// ErrExceeded is matched (errors.Is) by a refusal of a limit of the store as a whole (the
// clusters a group holds after a write), which the controller maps to ResourceExhausted; a
// request that is itself too large is invalid (validate.ErrInvalid, InvalidArgument).
var ErrExceeded = errors.New("limit exceeded")

// Error is a count or a size over its limit. It names the limit, its value and the count
// found; Where is the field or object ("reals", `group "edge-1"`).
type Error struct {
	Where string
	// What is the limit in words: "real servers per cluster".
	What     string
	Got, Max int64
}

// Error formats the refusal as `reals: 1500 real servers per cluster, more than the limit of 1000`.
func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s, more than the limit of %d", e.Got, e.What, e.Max)
	if e.Where != "" {
		s = e.Where + ": " + s
	}
	return s
}

// Is makes every Error match ErrExceeded.
func (e *Error) Is(target error) bool { return target == ErrExceeded }

// Quote returns s quoted as strconv.Quote does, cut to MaxEcho bytes (at a character
// boundary) and followed by its length when it is longer: `"aaaa..." (70000 bytes)`. The
// quoted prefix is also cut to 2*MaxEcho characters, as binary bytes quote to four each
// (\xff). Every error message that repeats a value given by a client goes through it.
func Quote(s string) string {
	q := strconv.Quote(s)
	if len(s) <= MaxEcho && len(q) <= 2*MaxEcho+2 {
		return q
	}
	cut := min(len(s), MaxEcho)
	for {
		for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut--
		}
		if q = strconv.Quote(s[:cut]); len(q) <= 2*MaxEcho+2 {
			return fmt.Sprintf("%s... (%d bytes)", q, len(s))
		}
		cut--
	}
}

// Prefix is Quote without the quotes for text of printable ASCII (a number as a manifest
// wrote it): `123456789012... (70000 bytes)`; any other text is quoted (Quote).
func Prefix(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return Quote(s)
		}
	}
	if len(s) <= MaxEcho {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:MaxEcho], len(s))
}
