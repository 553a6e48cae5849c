package inspect

import (
	"strconv"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// Linux signal numbers are the same on amd64 and arm64.
var signalNames = [...]string{1: "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
	"SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
	"SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
	"SIGIO", "SIGPWR", "SIGSYS"}

// SignalName names a Linux signal ("SIGUSR1", "SIGRTMIN+2"); an unknown
// number prints as a number.
func SignalName(sig uint32) string {
	if int(sig) < len(signalNames) && signalNames[sig] != "" {
		return signalNames[sig]
	}
	// glibc reserves 32 and 33; SIGRTMIN as programs see it is 34.
	if sig >= 34 && sig <= 64 {
		return "SIGRTMIN+" + strconv.Itoa(int(sig-34))
	}
	return strconv.FormatUint(uint64(sig), 10)
}

// Linux resource numbers (the same on amd64 and arm64).
var rlimitNames = [...]string{"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
	"RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
	"RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"}

// RlimitName names a resource ("RLIMIT_NOFILE"), or prints its number.
func RlimitName(res uint32) string {
	if int(res) < len(rlimitNames) {
		return rlimitNames[res]
	}
	return strconv.FormatUint(uint64(res), 10)
}

type bitName struct {
	bit  uint32
	name string
}

// Open flags differ between architectures for a few bits; these are the
// values of asm-generic/fcntl.h (amd64) and of arm64's overrides.
var openFlagsGeneric = []bitName{
	{0o100, "O_CREAT"}, {0o200, "O_EXCL"}, {0o400, "O_NOCTTY"}, {0o1000, "O_TRUNC"}, {0o2000, "O_APPEND"},
	{0o4000, "O_NONBLOCK"}, {0o4010000, "O_SYNC"}, {0o10000, "O_DSYNC"}, {0o20000, "O_ASYNC"}, {0o40000, "O_DIRECT"},
	{0o100000, "O_LARGEFILE"}, {0o200000, "O_DIRECTORY"}, {0o400000, "O_NOFOLLOW"}, {0o1000000, "O_NOATIME"},
	{0o2000000, "O_CLOEXEC"}, {0o10000000, "O_PATH"},
}

var openFlagsARM64 = []bitName{
	{0o100, "O_CREAT"}, {0o200, "O_EXCL"}, {0o400, "O_NOCTTY"}, {0o1000, "O_TRUNC"}, {0o2000, "O_APPEND"},
	{0o4000, "O_NONBLOCK"}, {0o4010000, "O_SYNC"}, {0o10000, "O_DSYNC"}, {0o20000, "O_ASYNC"}, {0o200000, "O_DIRECT"},
	{0o400000, "O_LARGEFILE"}, {0o40000, "O_DIRECTORY"}, {0o100000, "O_NOFOLLOW"}, {0o1000000, "O_NOATIME"},
	{0o2000000, "O_CLOEXEC"}, {0o10000000, "O_PATH"},
}

// OpenFlags prints open flags as the kernel of arch defines them
// ("O_RDWR|O_APPEND"); bits it does not know print in octal.
func OpenFlags(flags uint32, arch format.Arch) string {
	names := openFlagsGeneric
	if arch == format.ArchARM64 {
		names = openFlagsARM64
	}
	parts := []string{[]string{"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"}[flags&3]}
	rest := flags &^ 3
	for _, n := range names {
		// O_SYNC includes O_DSYNC's bit: match whole masks, widest first.
		if rest&n.bit == n.bit {
			parts = append(parts, n.name)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		parts = append(parts, "0"+strconv.FormatUint(uint64(rest), 8))
	}
	return strings.Join(parts, "|")
}

// Address families and socket types shared by amd64 and arm64.
var familyNames = map[uint32]string{1: "unix", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet"}
var sockTypeNames = map[uint32]string{1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket"}

func mapName(m map[uint32]string, v uint32, prefix string) string {
	if s, ok := m[v]; ok {
		return s
	}
	return prefix + strconv.FormatUint(uint64(v), 10)
}
