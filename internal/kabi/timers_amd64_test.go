package kabi

import "testing"

// TestTimerSpecs: itimerspec keeps nanoseconds; itimerval rounds up to
// microseconds, so that a value left below one is not taken as disarmed.
func TestTimerSpecs(t *testing.T) {
	b := make([]byte, TimerSpecSize)
	EncodeItimerspec(b, 3_000_000_007, 20_000_000)
	if v, iv := DecodeItimerspec(b); v != 3_000_000_007 || iv != 20_000_000 {
		t.Errorf("itimerspec: %d %d", v, iv)
	}
	EncodeItimerval(b, 1, 50_000_000)
	if v, iv := DecodeItimerval(b); v != 1000 || iv != 50_000_000 {
		t.Errorf("itimerval: %d %d, want 1000 50000000", v, iv)
	}
}
