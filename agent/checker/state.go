package checker

import "time"

// State is a target's health.
type State uint8

const (
	// Unknown: no check has decided yet (a new target, or the agent just started). It counts
	// as up for weights: an agent restart or a new real server must not take traffic away
	// before any check has run.
	Unknown State = iota
	// Up: serving.
	Up
	// Down: failing; its weight goes to 0 (or it is removed), per the cluster's setting.
	Down
)

// String is the state as status shows it: "unknown", "up" or "down".
func (s State) String() string {
	switch s {
	case Unknown:
		return "unknown"
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "invalid"
}

// Serving reports whether a target in this state keeps its weight: Up and Unknown do.
func (s State) Serving() bool { return s != Down }

// Transition is what one Step did.
type Transition struct {
	From, To State
	// At is the time of the step.
	At time.Time
	// Err is the check's result (nil: success).
	Err error
}

// Changed reports whether the step changed the state.
func (t Transition) Changed() bool { return t.From != t.To }

// Machine is the rise/fall state of one target. It is a pure state machine: no goroutines,
// no clock; the time comes with each result. The rules:
//
//   - Unknown: the first success makes it Up; Fall consecutive failures make it Down.
//   - Up: Fall consecutive failures make it Down; a success resets the count.
//   - Down: Rise consecutive successes make it Up; a failure resets the count.
//
// From Unknown one success is enough because the target already serves (Unknown counts as
// up): Rise guards the return of a server that was taken out, not the start of the agent.
type Machine struct {
	rise, fall  int
	state       State
	since       time.Time
	lastErr     error
	successes   int // consecutive, counted while Down
	failures    int // consecutive, counted while Up or Unknown
	transitions uint64
	checks      uint64
}

// NewMachine returns a machine in state Unknown since now. Rise and fall below 1 count as 1.
func NewMachine(rise, fall int, now time.Time) *Machine {
	m := &Machine{since: now}
	m.SetThresholds(rise, fall)
	return m
}

// SetThresholds changes rise and fall (a changed spec), keeping the state and the counts; the
// next Step compares the counts with the new thresholds.
func (m *Machine) SetThresholds(rise, fall int) {
	m.rise, m.fall = max(rise, 1), max(fall, 1)
}

// Step records one check's result (nil: success) at now and returns the transition, changed
// or not.
func (m *Machine) Step(now time.Time, result error) Transition {
	t := Transition{From: m.state, To: m.state, At: now, Err: result}
	m.checks++
	if result == nil {
		m.failures = 0
		switch m.state {
		case Unknown:
			t.To = Up
		case Down:
			m.successes++
			if m.successes >= m.rise {
				t.To = Up
			}
		}
	} else {
		m.lastErr = result
		m.successes = 0
		if m.state != Down {
			m.failures++
			if m.failures >= m.fall {
				t.To = Down
			}
		}
	}
	if t.Changed() {
		m.state = t.To
		m.since = now
		m.transitions++
		m.successes, m.failures = 0, 0
		if t.To == Up {
			m.lastErr = nil
		}
	}
	return t
}

// State is the current state.
func (m *Machine) State() State { return m.state }

// Since is the time of the last transition (of the machine's creation before any).
func (m *Machine) Since() time.Time { return m.since }

// LastError is the most recent failure: what took a Down target down (or a later failure), or
// a failure of an Up target that has not reached Fall yet. It is cleared when the target
// becomes Up.
func (m *Machine) LastError() error { return m.lastErr }

// Transitions counts the state changes (Unknown to Up included).
func (m *Machine) Transitions() uint64 { return m.transitions }

// Checks counts the results stepped.
func (m *Machine) Checks() uint64 { return m.checks }

// Streak is the count of consecutive successes (while Down) or failures (while Up or
// Unknown) towards the next transition.
func (m *Machine) Streak() int { return m.successes + m.failures }
