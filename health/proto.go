package health

import (
	"errors"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// What a director does with a real server its checks find down (HealthCheck.on_failure).
const (
	// OnFailureQuiesce: weight 0, established connections kept (the default: an LVS
	// operator's "quiescent" real server, as keepalived's inhibit_on_failure).
	OnFailureQuiesce = "quiesce"
	// OnFailureRemove: the real server leaves the IPVS service until it recovers.
	OnFailureRemove = "remove"
)

// FromProto is the Spec of a stored check (nil: none, the zero Spec), durations from
// milliseconds. Defaults are not applied.
func FromProto(h *lvsctlv1.HealthCheck) Spec {
	if h == nil {
		return Spec{}
	}
	return Spec{
		Kind:       Kind(h.GetCheck()),
		Port:       uint16(min(h.GetPort(), 65535)),
		Interval:   time.Duration(h.GetIntervalMs()) * time.Millisecond,
		Timeout:    time.Duration(h.GetTimeoutMs()) * time.Millisecond,
		Rise:       int(h.GetRise()),
		Fall:       int(h.GetFall()),
		Path:       h.GetPath(),
		Expect:     h.GetExpect(),
		Body:       h.GetBody(),
		URL:        h.GetUrl(),
		Describe:   h.GetDescribe(),
		ServerName: h.GetServerName(),
		Verify:     h.GetVerify(),
		Payload:    h.GetPayload(),
		UDPMode:    UDPMode(h.GetUdpMode()),
		Command:    h.GetCommand(),
	}
}

// Effective is the check of one real server: its own override (its check and per-kind
// fields; interval, timeout, rise, fall and on_failure it leaves zero come from the
// cluster's), else the cluster's. Nil: neither has one, the server is not checked.
func Effective(cluster, real *lvsctlv1.HealthCheck) *lvsctlv1.HealthCheck {
	if real == nil {
		return cluster
	}
	e := &lvsctlv1.HealthCheck{
		Check: real.GetCheck(), Port: real.GetPort(),
		IntervalMs: real.GetIntervalMs(), TimeoutMs: real.GetTimeoutMs(), Rise: real.GetRise(), Fall: real.GetFall(),
		OnFailure: real.GetOnFailure(),
		Path:      real.GetPath(), Expect: real.GetExpect(), Body: real.GetBody(),
		ServerName: real.GetServerName(), Verify: real.GetVerify(),
		Url: real.GetUrl(), Describe: real.GetDescribe(),
		Payload: real.GetPayload(), UdpMode: real.GetUdpMode(), Command: real.GetCommand(),
	}
	if e.IntervalMs == 0 {
		e.IntervalMs = cluster.GetIntervalMs()
	}
	if e.TimeoutMs == 0 {
		e.TimeoutMs = cluster.GetTimeoutMs()
	}
	if e.Rise == 0 {
		e.Rise = cluster.GetRise()
	}
	if e.Fall == 0 {
		e.Fall = cluster.GetFall()
	}
	if e.OnFailure == "" {
		e.OnFailure = cluster.GetOnFailure()
	}
	return e
}

// OnFailure is h's on_failure with its default.
func OnFailure(h *lvsctlv1.HealthCheck) string {
	if h.GetOnFailure() == "" {
		return OnFailureQuiesce
	}
	return h.GetOnFailure()
}

// ValidateProto validates a stored check as Validate does, and its on_failure. The errors are
// *FieldError (errors.Is ErrInvalid), named as the manifest names the fields.
func ValidateProto(h *lvsctlv1.HealthCheck) error {
	if h == nil {
		return nil
	}
	var errs []error
	if err := FromProto(h).Validate(); err != nil {
		errs = append(errs, err)
	}
	if h.GetPort() > 65535 {
		errs = append(errs, &FieldError{Field: "port", Reason: "is more than 65535"})
	}
	switch h.GetOnFailure() {
	case "", OnFailureQuiesce, OnFailureRemove:
	default:
		errs = append(errs, &FieldError{Field: "onFailure", Reason: `"` + h.GetOnFailure() + `" is not "quiesce" or "remove"`})
	}
	return errors.Join(errs...)
}
