package health

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func TestEffective(t *testing.T) {
	cluster := &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000, TimeoutMs: 500, Rise: 2, Fall: 2, OnFailure: "remove", Url: "rtsp://x/live"}
	if got := Effective(cluster, nil); got != cluster {
		t.Errorf("no override: %v, want the cluster's", got)
	}
	if got := Effective(nil, nil); got != nil {
		t.Errorf("no check anywhere: %v", got)
	}
	// The contract's example: {check: tcp, port: 1755} on one real server.
	got := Effective(cluster, &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755})
	want := &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755, IntervalMs: 1000, TimeoutMs: 500, Rise: 2, Fall: 2, OnFailure: "remove"}
	if !proto.Equal(got, want) {
		t.Errorf("override: %v, want %v (timings and onFailure inherited, the rtsp url not)", got, want)
	}
	own := Effective(cluster, &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755, IntervalMs: 3000, Fall: 5, OnFailure: "quiesce"})
	if own.GetIntervalMs() != 3000 || own.GetFall() != 5 || own.GetTimeoutMs() != 500 || own.GetOnFailure() != "quiesce" {
		t.Errorf("an override's own timings are kept: %v", own)
	}
}

func TestFromProto(t *testing.T) {
	s := FromProto(&lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000, TimeoutMs: 1000, Rise: 2, Fall: 2})
	if s.Kind != KindRTSP || s.Port != 554 || s.Interval != time.Second || s.Timeout != time.Second || s.Rise != 2 || s.Fall != 2 {
		t.Errorf("FromProto: %+v", s)
	}
	if s := FromProto(nil); s.Kind != "" {
		t.Errorf("FromProto(nil): %+v", s)
	}
}

func TestValidateProto(t *testing.T) {
	for _, tc := range []struct {
		h    *lvsctlv1.HealthCheck
		want string // a line of the error; "" valid
	}{
		{nil, ""},
		{&lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000, TimeoutMs: 500}, ""},
		{&lvsctlv1.HealthCheck{Check: "none"}, ""},
		{&lvsctlv1.HealthCheck{Check: "rtsp"}, "health.port: required for a rtsp check"},
		{&lvsctlv1.HealthCheck{Check: "tcp", Port: 70000}, "health.port: is more than 65535"},
		{&lvsctlv1.HealthCheck{Check: "tcp", Port: 80, OnFailure: "drop"}, `health.onFailure: "drop" is not "quiesce" or "remove"`},
		// The contract example.
		{&lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000, TimeoutMs: 1000, Rise: 2, Fall: 2, OnFailure: "quiesce"}, ""},
		{&lvsctlv1.HealthCheck{Check: "tcp", Port: 80, IntervalMs: 1000, TimeoutMs: 1500}, "health.timeout: 1.5s is more than health.interval (1s)"},
	} {
		err := ValidateProto(tc.h)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.h, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q (ErrInvalid)", tc.h, err, tc.want)
		}
	}
}
