package capture

import "testing"

// TestTrackTransitions checks every (state, event) pair against the table
// of the tracker's life in one capture; pairs not in it must panic.
func TestTrackTransitions(t *testing.T) {
	states := []trackState{noTracker, heldClean, heldReset, ownClean, ownReset}
	events := []trackEvent{trackScan, trackMove, trackStart, trackStop, trackRelease}
	// want[state] lists the state after each event (scan, move, start,
	// stop, release), by name; "-" where the event is not allowed.
	want := map[trackState][5]string{
		noTracker: {"-", "-", "own, reset", "-", "-"},
		heldClean: {"held, reset", "-", "-", "none", "none"},
		heldReset: {"-", "own, reset", "-", "none", "none"},
		ownClean:  {"own, reset", "-", "-", "none", "none"},
		ownReset:  {"-", "own, reset", "-", "none", "none"},
	}
	for _, s := range states {
		for i, e := range events {
			got := func() (name string) {
				defer func() {
					if recover() != nil {
						name = "-"
					}
				}()
				return s.next(e).String()
			}()
			if got != want[s][i] {
				t.Errorf("%v, %v: got %q, want %q", s, e, got, want[s][i])
			}
		}
	}
	// held and reset, which decide what a failed capture does.
	for _, tc := range []struct {
		s           trackState
		held, reset bool
	}{
		{noTracker, false, false},
		{heldClean, true, false},
		{heldReset, true, true},
		{ownClean, false, false},
		{ownReset, false, true},
	} {
		if tc.s.held() != tc.held || tc.s.reset() != tc.reset {
			t.Errorf("%v: held %t reset %t, want %t %t", tc.s, tc.s.held(), tc.s.reset(), tc.held, tc.reset)
		}
	}
}

// TestTrackLives walks the sequences a capture goes through.
func TestTrackLives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		from   trackState
		events []trackEvent
		want   trackState
	}{
		{"interval mode: held, scanned, kept", heldClean, []trackEvent{trackScan, trackRelease}, noTracker},
		{"--parent: resumed, scanned, moved, recorded", ownClean, []trackEvent{trackScan, trackMove, trackRelease}, noTracker},
		{"no lower fd: scanned, stopped, replaced", ownClean, []trackEvent{trackScan, trackStop, trackStart}, ownReset},
		{"scan failed: stopped, started anew", heldClean, []trackEvent{trackScan, trackStop, trackStart}, ownReset},
		{"first capture with --track", noTracker, []trackEvent{trackStart}, ownReset},
		{"failed before the scan: left as it was", heldClean, []trackEvent{trackRelease}, noTracker},
		{"failed after the scan: stopped", heldReset, []trackEvent{trackStop}, noTracker},
	} {
		s := tc.from
		for _, e := range tc.events {
			s = s.next(e)
		}
		if s != tc.want {
			t.Errorf("%s: ends %v, want %v", tc.name, s, tc.want)
		}
	}
}
