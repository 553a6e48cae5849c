package ptrace

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExecutorOneThread(t *testing.T) {
	ex := NewExecutor()
	var mu sync.Mutex
	tids := map[int]bool{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				_ = ex.Do(func() error {
					mu.Lock()
					tids[unix.Gettid()] = true
					mu.Unlock()
					return nil
				})
			}
		}()
	}
	wg.Wait()
	if len(tids) != 1 {
		t.Errorf("Do ran on %d threads, want 1", len(tids))
	}

	// Nested Do runs inline instead of deadlocking.
	sentinel := errors.New("inner")
	err := ex.Do(func() error {
		if !ex.OnThread() {
			t.Error("OnThread false inside Do")
		}
		return ex.Do(func() error { return sentinel })
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("nested Do = %v, want %v", err, sentinel)
	}
	if ex.OnThread() {
		t.Error("OnThread true outside Do")
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in Do was not re-raised in the caller")
			}
		}()
		_ = ex.Do(func() error { panic("boom") })
	}()
	// The executor survives a panicking function.
	if err := ex.Do(func() error { return nil }); err != nil {
		t.Errorf("Do after panic = %v", err)
	}

	ex.Close()
	ex.Close()
	if err := ex.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close = %v, want ErrClosed", err)
	}
}
