package restorer

import (
	"strings"
	"testing"
)

// TestCheckNamespaces: with --pidns the host's pids do not matter (PID 1
// is the namespace's init); --timens needs the clocks recorded at capture;
// without it a clock behind the capture's is a warning.
func TestCheckNamespaces(t *testing.T) {
	taken := map[int32]string{101: "process 101 (other)"}
	s, _ := testSession(t, testMeta(), Options{PIDNS: true})
	for _, p := range checkProbs(s, fakeHost(nil, taken)) {
		if strings.Contains(p.Subject, "pid") {
			t.Errorf("--pidns: %v", p)
		}
	}
	s, _ = testSession(t, testMeta(), Options{})
	if text := (&CheckError{Problems: checkProbs(s, fakeHost(nil, taken))}).Error(); !strings.Contains(text, "--pidns") {
		t.Errorf("a taken pid does not point at --pidns:\n%s", text)
	}

	s, _ = testSession(t, testMeta(), Options{TimeNS: true})
	if text := (&CheckError{Problems: checkProbs(s, fakeHost(nil, nil))}).Error(); !strings.Contains(text, "records no clocks") {
		t.Errorf("--timens of an image without clocks:\n%s", text)
	}
	m := testMeta()
	m.Capture.MonotonicNs, m.Capture.BoottimeNs = 5e12, 5e12
	s, _ = testSession(t, m, Options{TimeNS: true})
	if text := (&CheckError{Problems: checkProbs(s, fakeHost(nil, nil))}).Error(); strings.Contains(text, "clocks") {
		t.Errorf("--timens of an image with clocks:\n%s", text)
	}
	m = testMeta()
	m.Capture.MonotonicNs, m.Capture.BoottimeNs = 5e12, 5e12
	s, _ = testSession(t, m, Options{})
	host := fakeHost(nil, nil)
	host.MonotonicNs = 1e12
	if _, warnings := s.CheckHost(host); len(warnings) != 1 || !strings.Contains(warnings[0], "--timens") {
		t.Errorf("clock behind the capture's: warnings %q, want one naming --timens", warnings)
	}
}
