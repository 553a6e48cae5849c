package capture

import (
	"slices"
	"testing"
	"time"
)

func TestGenerationPath(t *testing.T) {
	for _, tc := range []struct {
		output string
		n      int
		want   string
	}{
		{"run.ckpt", 1, "run-0001.ckpt"},
		{"dir/run.ckpt", 12, "dir/run-0012.ckpt"},
		{"run", 3, "run-0003"},
		{"run.img", 10000, "run.img-10000"},
	} {
		if got := GenerationPath(tc.output, tc.n); got != tc.want {
			t.Errorf("GenerationPath(%q, %d) = %q, want %q", tc.output, tc.n, got, tc.want)
		}
	}
}

// TestGenerations writes generations one by one and checks each one's
// parent and what is obsolete after it.
func TestGenerations(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    Generations
		// per generation: its parent number, and the generation numbers
		// obsolete once it is written
		parents  []int
		obsolete [][]int
	}{
		{"full, keep all", Generations{Output: "r.ckpt"},
			[]int{0, 0, 0}, [][]int{nil, nil, nil}},
		{"full, keep 2", Generations{Output: "r.ckpt", Keep: 2},
			[]int{0, 0, 0, 0}, [][]int{nil, nil, {1}, {1, 2}}},
		{"incremental, keep all", Generations{Output: "r.ckpt", Incremental: true},
			[]int{0, 1, 2, 3}, [][]int{nil, nil, nil, nil}},
		// With keep 2 a full image starts every 2 generations: 1 full,
		// 2 on 1, 3 full, 4 on 3, 5 full.
		{"incremental, keep 2", Generations{Output: "r.ckpt", Keep: 2, Incremental: true},
			[]int{0, 1, 0, 3, 0}, [][]int{nil, nil, nil, {1, 2}, {1, 2}}},
		// 1 full, 2 on 1, 3 on 2, 4 full: 1 to 3 go once 3 is no longer
		// among the last 3.
		{"incremental, keep 3", Generations{Output: "r.ckpt", Keep: 3, Incremental: true},
			[]int{0, 1, 2, 0, 4, 5, 0}, [][]int{nil, nil, nil, nil, nil, {1, 2, 3}, {1, 2, 3}}},
		{"incremental, keep 1", Generations{Output: "r.ckpt", Keep: 1, Incremental: true},
			[]int{0, 0, 0}, [][]int{nil, {1}, {1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			for i, wantParent := range tc.parents {
				gen := g.Next()
				if gen.N != i+1 || gen.Path != GenerationPath("r.ckpt", i+1) || gen.Parent != wantParent {
					t.Fatalf("generation %d: got %+v, want parent %d", i+1, gen, wantParent)
				}
				wantParentPath := ""
				if wantParent != 0 {
					wantParentPath = GenerationPath("r.ckpt", wantParent)
				}
				if gen.ParentPath != wantParentPath {
					t.Errorf("generation %d: parent path %q, want %q", i+1, gen.ParentPath, wantParentPath)
				}
				var want []string
				for _, n := range tc.obsolete[i] {
					want = append(want, GenerationPath("r.ckpt", n))
				}
				if got := g.Written(gen); !slices.Equal(got, want) {
					t.Errorf("after generation %d: obsolete %q, want %q", i+1, got, want)
				}
				if g.Len() != i+1 {
					t.Errorf("after generation %d: Len %d", i+1, g.Len())
				}
			}
		})
	}
}

func TestGenerationsSingle(t *testing.T) {
	g := Generations{Output: "run.ckpt", Single: true}
	if gen := g.Next(); gen.Path != "run.ckpt" || gen.N != 1 || gen.Parent != 0 {
		t.Errorf("single: %+v, want run.ckpt, generation 1, full", gen)
	}
}

// TestSchedule runs each schedule through a script of events and checks
// the answers: the timer asked for, and whether a request captures.
func TestSchedule(t *testing.T) {
	const (
		first   = "first"   // First: want the delay (0: none)
		fired   = "fired"   // Fired: want the delay (0: none)
		request = "request" // Request: want capture (delay 1) or not (0)
		written = "written"
		stop    = "stop"
	)
	type step struct {
		event string
		want  time.Duration
	}
	for _, tc := range []struct {
		name   string
		s      Schedule
		single bool
		steps  []step
	}{
		{"requests only", Schedule{}, false, []step{
			{first, 0}, {request, 1}, {written, 0}, {request, 1}, {written, 0}, {stop, 0}, {request, 0}}},
		{"after: one image", Schedule{After: time.Second}, true, []step{
			{first, time.Second}, {fired, 0}, {written, 0}, {request, 0}}},
		{"after: a request before the timer", Schedule{After: time.Second}, true, []step{
			{first, time.Second}, {request, 1}, {written, 0}, {request, 0}, {fired, 0}}},
		{"interval", Schedule{Interval: time.Minute}, false, []step{
			{first, time.Minute}, {fired, time.Minute}, {written, 0}, {request, 1}, {written, 0}, {fired, time.Minute}}},
		{"after then interval", Schedule{After: time.Second, Interval: time.Minute}, false, []step{
			{first, time.Second}, {fired, time.Minute}, {written, 0}, {fired, time.Minute}, {stop, 0}, {request, 0}}},
		{"stopped before any capture", Schedule{After: time.Second}, true, []step{
			{first, time.Second}, {stop, 0}, {request, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			if s.Single() != tc.single {
				t.Errorf("Single() = %t, want %t", s.Single(), tc.single)
			}
			for i, st := range tc.steps {
				var got time.Duration
				switch st.event {
				case first, fired:
					var d time.Duration
					var ok bool
					if st.event == first {
						d, ok = s.First()
					} else {
						d, ok = s.Fired()
					}
					if ok != (d != 0) {
						t.Fatalf("step %d %s: delay %v with ok %t", i, st.event, d, ok)
					}
					got = d
				case request:
					if s.Request() {
						got = 1
					}
				case written:
					s.Written()
				case stop:
					s.Stop()
				}
				if got != st.want {
					t.Errorf("step %d %s: got %v, want %v", i, st.event, got, st.want)
				}
			}
		})
	}
}
