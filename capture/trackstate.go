package capture

import "fmt"

// trackState is where the dirty page tracker of one process stands during
// one capture: who owns this process's handle on it, and whether this
// capture changed it. That decides what a failed capture does with it: a
// tracker left untouched stays as it was, a changed one no longer
// describes the writes since the image that recorded it and is stopped.
type trackState uint8

const (
	// noTracker: none, or it was stopped or handed on.
	noTracker trackState = iota
	// heldClean: the tracker Options.Tracking holds, not scanned yet.
	heldClean
	// heldReset: the tracker Options.Tracking holds, scanned by this
	// capture; stopping it takes it out of Options.Tracking.
	heldReset
	// ownClean: this capture's handle on a tracker left in the target
	// (resumed from the parent image's record, or found at another fd),
	// not scanned yet.
	ownClean
	// ownReset: a tracker this capture scanned, moved or started.
	ownReset
)

// trackEvent is what a capture does to a tracker.
type trackEvent uint8

const (
	trackScan    trackEvent = iota // scanned (reset), whatever the result
	trackMove                      // its fd moved in the target: a new handle, not the held one
	trackStart                     // a new tracker started where there was none
	trackStop                      // stopped: its fd closed in the target
	trackRelease                   // handed on (to Options.Tracking, to the target alone) or left as it was
)

// trackTransitions lists every allowed transition; any other is a bug.
var trackTransitions = map[trackState]map[trackEvent]trackState{
	noTracker: {trackStart: ownReset},
	heldClean: {trackScan: heldReset, trackStop: noTracker, trackRelease: noTracker},
	heldReset: {trackMove: ownReset, trackStop: noTracker, trackRelease: noTracker},
	ownClean:  {trackScan: ownReset, trackStop: noTracker, trackRelease: noTracker},
	ownReset:  {trackMove: ownReset, trackStop: noTracker, trackRelease: noTracker},
}

// next is the state after e.
func (s trackState) next(e trackEvent) trackState {
	n, ok := trackTransitions[s][e]
	if !ok {
		panic(fmt.Sprintf("capture: dirty tracker %v: %v is not allowed", s, e))
	}
	return n
}

// held reports whether Options.Tracking holds the tracker.
func (s trackState) held() bool { return s == heldClean || s == heldReset }

// reset reports whether this capture changed the tracker's state: if the
// capture then fails, the tracker must be stopped.
func (s trackState) reset() bool { return s == heldReset || s == ownReset }

func (s trackState) String() string {
	switch s {
	case noTracker:
		return "none"
	case heldClean:
		return "held"
	case heldReset:
		return "held, reset"
	case ownClean:
		return "own"
	case ownReset:
		return "own, reset"
	}
	return fmt.Sprintf("trackState(%d)", uint8(s))
}

func (e trackEvent) String() string {
	switch e {
	case trackScan:
		return "scan"
	case trackMove:
		return "move"
	case trackStart:
		return "start"
	case trackStop:
		return "stop"
	case trackRelease:
		return "release"
	}
	return fmt.Sprintf("trackEvent(%d)", uint8(e))
}
