// Package validate is the one validation of the desired state: the controller runs it
// authoritatively before every write, and lvsctl runs it for early feedback. It works on the
// proto objects, so both sides check exactly the same thing.
package validate

import (
	"errors"
	"fmt"

	"github.com/lvsctl/lvsctl/controlplane/limits"
)

// ErrInvalid is matched (errors.Is) by every validation error, so callers map it to
// codes.InvalidArgument without looking at the text.
var ErrInvalid = errors.New("invalid object")

// Kind names used in error messages and by lvsctl (cluster/wms, group/edge-1).
const (
	KindCluster = "cluster"
	KindGroup   = "group"
)

// FieldError is one refused field of one object.
type FieldError struct {
	// Kind is KindCluster or KindGroup.
	Kind string
	// Name is the object's name as written (possibly invalid itself).
	Name string
	// Path is the field, as written in a manifest: "ports[4].ports", "gateway.address".
	Path string
	// Reason says what is wrong, and where it helps what would be right.
	Reason string
}

// Error formats the error as `cluster "wms": ports[4].ports: range 5000-1024 is reversed`.
func (e *FieldError) Error() string {
	obj := "object"
	if e.Kind != "" {
		obj = e.Kind
	}
	if e.Path == "" {
		return fmt.Sprintf("%s %s: %s", obj, limits.Quote(e.Name), e.Reason)
	}
	return fmt.Sprintf("%s %s: %s: %s", obj, limits.Quote(e.Name), e.Path, e.Reason)
}

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// collector gathers the errors of one object so that one pass reports all of them, up to
// limits.MaxErrors (errList).
type collector struct {
	kind, name string
	errList
}

func (c *collector) add(path, format string, args ...any) {
	c.errList.add(func() error {
		return &FieldError{Kind: c.kind, Name: c.name, Path: path, Reason: fmt.Sprintf(format, args...)}
	})
}

// errList keeps the first limits.MaxErrors errors and counts the rest: an operator fixes the
// first ones and runs again, and a broken input cannot make an answer as large as itself.
type errList struct {
	errs    []error
	dropped int
}

// add keeps the error mk returns, made only while there is room.
func (l *errList) add(mk func() error) {
	if len(l.errs) >= limits.MaxErrors {
		l.dropped++
		return
	}
	l.errs = append(l.errs, mk())
}

func (l *errList) err() error {
	if l.dropped > 0 {
		return errors.Join(append(l.errs, MoreErrors(l.dropped))...)
	}
	return errors.Join(l.errs...)
}

// MoreErrors closes a list of errors cut at limits.MaxErrors: "and 12 more problems".
// It matches ErrInvalid, as the errors it stands for.
type MoreErrors int

func (n MoreErrors) Error() string {
	return fmt.Sprintf("and %d more problems (the first %d are listed)", int(n), limits.MaxErrors)
}

// Is makes MoreErrors match ErrInvalid.
func (n MoreErrors) Is(target error) bool { return target == ErrInvalid }
