// Package validate is the one validation of the desired state: the controller runs it
// authoritatively before every write, and lvsctl runs it for early feedback. It works on the
// proto objects, so both sides check exactly the same thing.
package validate

import (
	"errors"
	"fmt"
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
		return fmt.Sprintf("%s %q: %s", obj, e.Name, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s: %s", obj, e.Name, e.Path, e.Reason)
}

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// collector gathers the errors of one object so that one pass reports all of them.
type collector struct {
	kind, name string
	errs       []error
}

func (c *collector) add(path, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Kind: c.kind, Name: c.name, Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (c *collector) err() error { return errors.Join(c.errs...) }
