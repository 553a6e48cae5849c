// Package ptrace is the live-process layer shared by capture and restorer:
// a locked-thread executor through which every ptrace request and wait goes,
// freezing (seizing) all threads of a process, per-thread register and signal
// state, syscall injection through a `syscall` gadget found in the tracee's
// vDSO, and bulk memory transfer with process_vm_readv/writev.
//
// The kernel accepts ptrace requests for a tracee only from the thread that
// attached it, so every request runs on the Executor's goroutine, which is
// locked to its OS thread for its whole life. Tracee methods hop onto that
// goroutine themselves; calling them from inside Executor.Do is also fine
// (Do runs the function inline when already on the executor thread).
//
// A seized process is crash safe: before a thread's registers or mask
// change, it is armed with a signal frame of its own state and a
// trampoline in the vDSO padding, so that if the tracer dies at any
// instant the thread returns to exactly that state (guard_linux_amd64.go).
// Scratch areas for injected syscalls' answers come from the stack
// (Tracee.Scratch), and Rest puts everything back while the threads stay
// stopped.
//
// Register layouts and injection are architecture specific and live in
// *_linux_amd64.go files; every use of package unsafe is in a *_unsafe.go
// file. Only linux/amd64 is implemented.
//
// Typical capture use:
//
//	ex := ptrace.NewExecutor()
//	defer ex.Close()
//	tr, err := ex.Seize(pid)          // all threads frozen
//	...
//	regs, _ := tr.GetRegs(tid)        // per-thread state, before injecting
//	tr.BlockSignals()                 // no signal may arrive mid-injection
//	brk, _ := tr.Syscall(pid, unix.SYS_BRK, 0)
//	...
//	tr.Rest()                         // own state back, still frozen: read memory
//	tr.Detach()                       // everything put back, threads run
package ptrace
