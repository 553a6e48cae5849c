// Package capture records a live process tree into a ckptimg image from
// outside the process: ptrace freezes every thread, per-thread state comes
// from ptrace requests, the state only the process itself can report
// (signal actions, brk, alternate stacks, clear_child_tid) from syscalls
// injected with every signal blocked, the rest from /proc, and memory from
// process_vm_readv in large batches chosen with /proc/PID/pagemap.
//
// Reading memory and writing the image overlap: one goroutine reads batches
// into a few reusable buffers while the caller's goroutine hands them to the
// format.Writer, which hashes and compresses chunks on every core.
//
// Whatever happens, the target is left as it was: injected state is undone
// (registers, signal masks and the stack bytes of injection's scratch
// areas restored) and every thread is detached, unless Options.Kill asked
// for it to end after a complete image and Options.CheckKill agreed. Even a
// capture that is killed itself leaves the target as it was (ptrace's crash
// safety). Command mode's policy is here too: Generations names the images
// and picks their parents, Schedule decides when to capture.
// docs/capture.md describes the command and its limits.
package capture
