// Package checker runs the health checks of a director's real servers (health.Spec says
// what a check is and why its defaults are what they are). It has three parts, each usable
// alone:
//
//   - Probe: one check of one address, honouring its context and the spec's timeout (a
//     deadline on every socket). Failures are values: sentinel errors (ErrTimeout, ErrRefused,
//     ErrStatus, ...) matched with errors.Is, never by their text.
//   - Machine: the rise/fall state of one target (Unknown, Up, Down), a pure state machine fed
//     with probe results and the time.
//   - Checker: runs the probes of a set of targets on a fixed pool of workers and one
//     scheduler goroutine, reports transitions (Options.OnChange) and a Snapshot.
package checker
