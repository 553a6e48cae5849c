package kabi

// TimerSpecSize is the size of struct itimerspec and of struct itimerval on
// x86-64: two pairs of 64-bit words, the interval first, then the value.
// itimerspec holds (seconds, nanoseconds), itimerval (seconds,
// microseconds).
const TimerSpecSize = 32

// DecodeItimerspec reads a struct itimerspec as nanoseconds.
func DecodeItimerspec(b []byte) (valueNs, intervalNs int64) {
	return pairNs(b[16:], 1), pairNs(b[0:], 1)
}

// EncodeItimerspec writes a struct itimerspec into b.
func EncodeItimerspec(b []byte, valueNs, intervalNs int64) {
	putPair(b[0:], intervalNs, 1)
	putPair(b[16:], valueNs, 1)
}

// DecodeItimerval reads a struct itimerval as nanoseconds.
func DecodeItimerval(b []byte) (valueNs, intervalNs int64) {
	return pairNs(b[16:], 1000), pairNs(b[0:], 1000)
}

// EncodeItimerval writes a struct itimerval into b; a value below one
// microsecond is rounded up, as zero would disarm the timer.
func EncodeItimerval(b []byte, valueNs, intervalNs int64) {
	putPair(b[0:], (intervalNs+999)/1000*1000, 1000)
	putPair(b[16:], (valueNs+999)/1000*1000, 1000)
}

func pairNs(b []byte, unit int64) int64 {
	return int64(le.Uint64(b[0:]))*1e9 + int64(le.Uint64(b[8:]))*unit
}

func putPair(b []byte, ns, unit int64) {
	le.PutUint64(b[0:], uint64(ns/1e9))
	le.PutUint64(b[8:], uint64(ns%1e9/unit))
}

// SigeventSize is the size of struct sigevent: sigev_value, sigev_signo,
// sigev_notify, then a union whose first int is the thread id of
// SIGEV_THREAD_ID.
const SigeventSize = 64

// EncodeSigevent writes a struct sigevent into b.
func EncodeSigevent(b []byte, value uint64, signo, notify uint32, tid int32) {
	clear(b[:SigeventSize])
	le.PutUint64(b[0:], value)
	le.PutUint32(b[8:], signo)
	le.PutUint32(b[12:], notify)
	le.PutUint32(b[16:], uint32(tid))
}
