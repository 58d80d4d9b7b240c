package checker

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestMachine feeds sequences of results, one a second on a fake clock ('+' success, '-'
// failure), and checks the state after each, the transitions and Since.
func TestMachine(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
		results    string
		states     string // after each result: U(nknown), u(p), d(own)
		transition int    // count at the end
		since      int    // index of the result of the last transition; -1: creation
	}{
		{"first success from unknown is up", 2, 3, "+", "u", 1, 0},
		{"unknown stays unknown below fall", 2, 3, "--", "UU", 0, -1},
		{"fall failures from unknown is down", 2, 3, "---", "UUd", 1, 2},
		{"unknown, failures, then a success is up", 2, 3, "--+", "UUu", 1, 2},
		{"up needs fall consecutive failures", 2, 3, "+--+--+", "uuuuuuu", 1, 0},
		{"up to down", 2, 3, "+---", "uuud", 2, 3},
		{"down needs rise consecutive successes", 2, 3, "---+-+-", "UUddddd", 1, 2},
		{"down to up after rise", 2, 3, "---++", "UUddu", 2, 4},
		{"flapping up stays up", 2, 2, "+-+-+-+-", "uuuuuuuu", 1, 0},
		{"flapping down stays down", 3, 2, "--++-++-++", "Uddddddddd", 1, 1},
		{"rise 1 fall 1 follows every result", 1, 1, "+-+-", "udud", 4, 3},
		{"thresholds below 1 count as 1", 0, 0, "-+", "du", 2, 1},
		{"a full cycle", 2, 2, "+--++--", "uudduud", 4, 6},
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	errDown := errors.New("probe failed")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMachine(tt.rise, tt.fall, t0)
			if m.State() != Unknown || !m.Since().Equal(t0) {
				t.Fatalf("new machine: %v since %v", m.State(), m.Since())
			}
			for i, r := range tt.results {
				now := t0.Add(time.Duration(i+1) * time.Second)
				var res error
				if r == '-' {
					res = fmt.Errorf("check %d: %w", i, errDown)
				}
				before := m.State()
				tr := m.Step(now, res)
				want := map[byte]State{'U': Unknown, 'u': Up, 'd': Down}[tt.states[i]]
				if tr.From != before || tr.To != want || m.State() != want || !tr.At.Equal(now) || tr.Err != res {
					t.Fatalf("step %d (%c): transition %+v, state %v; want %v", i, r, tr, m.State(), want)
				}
				if tr.Changed() != (before != want) {
					t.Fatalf("step %d: Changed() = %v", i, tr.Changed())
				}
			}
			if got := m.Transitions(); got != uint64(tt.transition) {
				t.Errorf("transitions %d, want %d", got, tt.transition)
			}
			if got := m.Checks(); got != uint64(len(tt.results)) {
				t.Errorf("checks %d, want %d", got, len(tt.results))
			}
			wantSince := t0.Add(time.Duration(tt.since+1) * time.Second)
			if !m.Since().Equal(wantSince) {
				t.Errorf("since %v, want %v", m.Since().Sub(t0), wantSince.Sub(t0))
			}
		})
	}
}

func TestMachineLastError(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMachine(2, 2, t0)
	e1, e2 := errors.New("first"), errors.New("second")
	m.Step(t0, e1)
	if m.LastError() != e1 || m.State() != Unknown {
		t.Fatalf("after one failure: %v, %v", m.State(), m.LastError())
	}
	m.Step(t0, e2)
	if m.LastError() != e2 || m.State() != Down {
		t.Fatalf("down: %v, %v", m.State(), m.LastError())
	}
	m.Step(t0, nil) // rising, still down: the error that explains it stays
	if m.LastError() != e2 || m.State() != Down || m.Streak() != 1 {
		t.Fatalf("rising: %v, %v, streak %d", m.State(), m.LastError(), m.Streak())
	}
	m.Step(t0, nil)
	if m.LastError() != nil || m.State() != Up {
		t.Fatalf("up: %v, %v", m.State(), m.LastError())
	}
	m.Step(t0, e1) // failing but not yet down: shown
	if m.LastError() != e1 || m.State() != Up || m.Streak() != 1 {
		t.Fatalf("up, failing: %v, %v", m.State(), m.LastError())
	}
}

func TestMachineSetThresholds(t *testing.T) {
	t0 := time.Now()
	m := NewMachine(2, 5, t0)
	m.Step(t0, nil)
	for range 3 {
		m.Step(t0, errors.New("x"))
	}
	m.SetThresholds(2, 3) // the spec changed: 3 failures already counted reach the new fall
	if m.State() != Up {
		t.Fatalf("SetThresholds changed the state: %v", m.State())
	}
	if m.Step(t0, errors.New("x")); m.State() != Down {
		t.Fatalf("after a 4th failure with fall 3: %v", m.State())
	}
}

func TestStateStrings(t *testing.T) {
	for s, want := range map[State]string{Unknown: "unknown", Up: "up", Down: "down"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
	if !Unknown.Serving() || !Up.Serving() || Down.Serving() {
		t.Error("Serving: Unknown and Up serve, Down does not")
	}
}
