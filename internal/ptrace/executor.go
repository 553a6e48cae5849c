package ptrace

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Executor runs functions on one goroutine locked to one OS thread. The
// kernel ties a tracee to the thread that attached it, so every ptrace
// request and every wait for a tracee must run here.
type Executor struct {
	reqs    chan func()
	done    chan struct{} // closed by Close
	exited  chan struct{} // closed when the goroutine has returned
	tid     int           // OS thread id of the locked thread
	closing sync.Once

	// born records tasks made by an injected clone in a guarded tracee
	// until Adopt takes them. Executor thread only.
	born map[int]birth
}

// NewExecutor starts the executor goroutine.
func NewExecutor() *Executor {
	ex := &Executor{
		reqs:   make(chan func()),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		born:   map[int]birth{},
	}
	ready := make(chan int)
	go ex.loop(ready)
	ex.tid = <-ready
	return ex
}

func (ex *Executor) loop(ready chan<- int) {
	// Never unlocked: when this goroutine returns while still locked, the
	// runtime terminates the thread instead of reusing it, and the kernel
	// detaches whatever it still traced. A tracer thread must never go back
	// to running arbitrary goroutines.
	runtime.LockOSThread()
	defer close(ex.exited)
	ready <- unix.Gettid()
	for {
		select {
		case f := <-ex.reqs:
			f()
		case <-ex.done:
			return
		}
	}
}

// ThreadID is the OS thread id of the executor thread: what tracees see as
// their tracer (TracerPid in /proc/PID/status).
func (ex *Executor) ThreadID() int { return ex.tid }

// OnThread reports whether the caller runs on the executor's thread (that
// is, inside a function passed to Do).
func (ex *Executor) OnThread() bool {
	select {
	case <-ex.exited:
		// The thread id may have been reused by another thread.
		return false
	default:
	}
	return unix.Gettid() == ex.tid
}

// Do runs fn on the executor thread and returns its error. Called from
// inside another Do, it runs fn directly. A panic in fn is re-raised in the
// caller. After Close it returns ErrClosed.
func (ex *Executor) Do(fn func() error) error {
	if ex.OnThread() {
		return fn()
	}
	type result struct {
		err   error
		panic any
	}
	res := make(chan result, 1)
	f := func() {
		defer func() {
			if p := recover(); p != nil {
				res <- result{panic: p}
			}
		}()
		res <- result{err: fn()}
	}
	select {
	case ex.reqs <- f:
	case <-ex.done:
		return ErrClosed
	}
	r := <-res
	if r.panic != nil {
		panic(fmt.Sprintf("ptrace: panic on executor thread: %v", r.panic))
	}
	return r.err
}

// Close stops the executor. Tracees still attached are detached by the
// kernel when the thread exits, but Detach them first to restore their
// state. Close waits for the thread to finish unless called from it.
func (ex *Executor) Close() error {
	ex.closing.Do(func() { close(ex.done) })
	if !ex.OnThread() {
		<-ex.exited
	}
	return nil
}

// StartProcess starts cmd from the executor thread, so that a child started
// with cmd.SysProcAttr.Ptrace set is traced by this executor.
func (ex *Executor) StartProcess(cmd *exec.Cmd) error {
	return ex.Do(cmd.Start)
}
