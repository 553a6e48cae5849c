package format

// Timers of a process: POSIX timers (timer_create) and interval timers
// (setitimer, alarm). Times are nanoseconds; a Value is the time that was
// left at capture, so a restorer arms it again relative to its own now.

// PosixTimer is one timer_create timer of a process, as /proc/PID/timers
// and timer_gettime showed it.
type PosixTimer struct {
	ID      int32  `ckpt:"1"` // the timer id (timer_t) the program holds
	ClockID int32  `ckpt:"2"` // CLOCK_* id it was created on (negative: a CPU clock of a given task)
	Notify  uint32 `ckpt:"3"` // sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD_ID 4
	Signal  uint32 `ckpt:"4"` // sigev_signo
	// SigValue is sigev_value (sival_int or sival_ptr), handed back in the
	// siginfo of every expiration.
	SigValue uint64 `ckpt:"5"`
	// TID is the thread a SIGEV_THREAD_ID timer signals (0 otherwise).
	TID        int32 `ckpt:"6"`
	ValueNs    int64 `ckpt:"7"` // time to the next expiration, relative to capture; 0 = disarmed
	IntervalNs int64 `ckpt:"8"` // period; 0 = one-shot
	// Overrun is timer_getoverrun at capture: informational, the kernel
	// has no way to set it.
	Overrun int32 `ckpt:"9"`
}

// IntervalTimer is one armed setitimer timer (alarm is ITIMER_REAL).
type IntervalTimer struct {
	Which      uint32 `ckpt:"1"` // ITIMER_REAL 0, ITIMER_VIRTUAL 1, ITIMER_PROF 2
	ValueNs    int64  `ckpt:"2"` // time to the next expiration, relative to capture
	IntervalNs int64  `ckpt:"3"` // period; 0 = one-shot
}

// The sigev_notify values of PosixTimer.Notify (<asm-generic/siginfo.h>).
const (
	SigevSignal   = 0 // signal the process
	SigevNone     = 1 // no notification: the program polls timer_gettime
	SigevThread   = 2 // glibc's thread notification; the kernel never holds it
	SigevThreadID = 4 // signal the thread PosixTimer.TID
)

// SeccompFilter is one seccomp filter a thread runs under: its classic
// BPF program as the kernel holds it (struct sock_filter, 8 bytes an
// instruction, at most 4096) and the SECCOMP_FILTER_FLAG_* flags it was
// installed with that the kernel records (LOG). A process lists each
// filter once; Thread.SeccompChain names those of a thread.
type SeccompFilter struct {
	Prog  []byte `ckpt:"1"` // the BPF program
	Flags uint64 `ckpt:"2"` // SECCOMP_FILTER_FLAG_* flags kept by the kernel
}
