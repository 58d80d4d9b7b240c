package validate

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// MaxRemoveGrace bounds a cluster's removeGrace. A removed real server is held at weight 0
// until its connections end or the grace runs out; a grace of more than a day is a server
// forgotten in the kernel rather than a drain (persistence templates last at most 31 days,
// and an operator who means to wait longer drains it and removes it later).
const MaxRemoveGrace = 24 * time.Hour

// checkHealth checks the cluster's health check and each real server's effective one (its
// override over the cluster's, health.Effective), as every director will run them, and the
// removal grace. An error the override only inherits from the cluster's check is reported
// once, on the cluster's.
func checkHealth(c *collector, cl *lvsctlv1.Cluster) {
	var inherited []health.FieldError
	if h := cl.GetHealth(); h != nil {
		inherited = healthErrors(h, cl.GetService() != nil)
		for _, e := range inherited {
			c.add("health."+e.Field, "%s", e.Reason)
		}
	}
	for i, r := range cl.GetReals() {
		if r.GetHealth() == nil {
			continue
		}
		for _, e := range healthErrors(health.Effective(cl.GetHealth(), r.GetHealth()), cl.GetService() != nil) {
			if !slices.Contains(inherited, e) {
				c.add(fmt.Sprintf("reals[%d].health.%s", i, e.Field), "%s", e.Reason)
			}
		}
	}

	grace := time.Duration(cl.GetRemoveGraceMs()) * time.Millisecond
	switch {
	case cl.GetRemoveNow() && grace != 0:
		c.add("removeGrace", "%s is set together with remove_now (removeGrace 0s): one or the other", grace)
	case grace > MaxRemoveGrace:
		c.add("removeGrace", "%s is longer than %s", grace, MaxRemoveGrace)
	}
}

// healthErrors is every refused field of one check. A firewall-mark service's real servers
// have port 0: a check that probes a port must name it, and the error says why (health's own
// "required for a tcp check" would leave an operator who wrote the service's ports
// wondering). A plain service's check names its port too (plain says which): the directors
// probe the port the check names, never one guessed from the service, so that a check reads
// the same on either kind of cluster (lvsctl import fills it in from the real server).
func healthErrors(h *lvsctlv1.HealthCheck, plain bool) []health.FieldError {
	texts := healthTexts(h)
	var out []health.FieldError
	for _, t := range texts {
		if r := checkText(t.value, t.max); r != "" {
			out = append(out, health.FieldError{Field: t.field, Reason: r})
		}
	}
	if n := len(h.GetCommand()); n > limits.MaxCommandArgs {
		out = append(out, health.FieldError{Field: "command", Reason: fmt.Sprintf("%d arguments, more than the limit of %d", n, limits.MaxCommandArgs)})
	}
	// Package health's own checks assume text of a sane size, and repeat values whole.
	if len(out) > 0 {
		return out
	}
	kind := health.Kind(h.GetCheck())
	portRequired := h.GetPort() == 0 && slices.Contains(health.Kinds, kind) && kind != health.KindExec && kind != health.KindNone
	if portRequired {
		reason := fmt.Sprintf("required for a fwmark service: its real servers have port 0, so a %s check names the port it probes (e.g. port: 554)", kind)
		if plain {
			reason = fmt.Sprintf("required: a %s check names the port it probes (e.g. the real server's port)", kind)
		}
		out = append(out, health.FieldError{Field: "port", Reason: reason})
	}
	eachLeaf(health.ValidateProto(h), func(err error) {
		var fe *health.FieldError
		switch {
		case !errors.As(err, &fe):
			// ValidateProto returns only *FieldError; anything else is still a refusal,
			// reported against the check as a whole rather than dropped.
			out = append(out, health.FieldError{Field: "check", Reason: err.Error()})
		case portRequired && fe.Field == "port":
			// health's own "required" for the port, said above with the reason.
		default:
			out = append(out, *fe)
		}
	})
	// A manifest writes the payload as text (get -o yaml must print what apply reads back).
	if !utf8.Valid(h.GetPayload()) {
		out = append(out, health.FieldError{Field: "payload", Reason: "is not UTF-8 text (a manifest writes the payload as text)"})
	}
	// Package health (shared with the agent, whose logs want the whole value) quotes a
	// refused value whole; the controller's answers repeat at most limits.MaxEcho bytes of it.
	for _, t := range texts {
		if len(t.value) <= limits.MaxEcho {
			continue
		}
		for i := range out {
			out[i].Reason = strings.ReplaceAll(out[i].Reason, strconv.Quote(t.value), limits.Quote(t.value))
		}
	}
	return out
}

// healthText is one text field of a check and its length limit.
type healthText struct {
	field, value string
	max          int
}

func healthTexts(h *lvsctlv1.HealthCheck) []healthText {
	out := []healthText{
		{"check", h.GetCheck(), limits.MaxShortString},
		{"onFailure", h.GetOnFailure(), limits.MaxShortString},
		{"udpMode", h.GetUdpMode(), limits.MaxShortString},
		{"expect", h.GetExpect(), limits.MaxShortString},
		{"path", h.GetPath(), limits.MaxPathLen},
		{"body", h.GetBody(), limits.MaxPathLen},
		{"url", h.GetUrl(), limits.MaxPathLen},
		{"serverName", h.GetServerName(), limits.MaxHostLen},
	}
	if len(h.GetCommand()) <= limits.MaxCommandArgs {
		for i, a := range h.GetCommand() {
			out = append(out, healthText{fmt.Sprintf("command[%d]", i), a, limits.MaxCommandArgLen})
		}
	}
	return out
}

// checkText refuses a text field that is longer than max bytes, not UTF-8 (a proto string
// must be: the store could not even encode it) or holds a NUL byte (no probe, header or
// argument can carry one). It returns "" for a good one.
func checkText(s string, max int) string {
	switch {
	case len(s) > max:
		return fmt.Sprintf("%d bytes, more than the limit of %d", len(s), max)
	case !utf8.ValidString(s):
		return "is not UTF-8 text"
	case strings.IndexByte(s, 0) >= 0:
		return "holds a NUL byte"
	}
	return ""
}

// eachLeaf calls fn with each error that errors.Join joined into err, however nested.
func eachLeaf(err error, fn func(error)) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			eachLeaf(e, fn)
		}
		return
	}
	fn(err)
}
