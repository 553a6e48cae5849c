package dirty

import (
	"errors"
	"os"
	"testing"

	"github.com/ckptimg/ckptimg/internal/procfs"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// allowAllSeccomp is a python3 program that installs a seccomp filter
// allowing everything (SECCOMP_RET_ALLOW) and then sleeps.
const allowAllSeccomp = `
import ctypes, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
buf = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000))
fbuf = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", 1, ctypes.addressof(buf)))
libc.prctl(38, 1, 0, 0, 0)
if libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) != 0:
    print("seccomp failed", ctypes.get_errno(), flush=True); sys.exit(1)
print("ready", flush=True)
while True: time.sleep(0.05)
`

func TestSeccompRefused(t *testing.T) {
	needSupport(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no python3")
	}
	p := testprog.Start(t, "/usr/bin/python3", "-c", allowAllSeccomp)
	_, tr := seize(t, p.PID)
	maps, err := procfs.NewFS("").Proc(p.PID).Maps()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(tr, Trackable(maps), Options{}); !errors.Is(err, ErrSeccomp) {
		t.Fatalf("Start under seccomp: %v, want ErrSeccomp", err)
	}
	dt, err := Start(tr, Trackable(maps), Options{IgnoreSeccomp: true})
	if err != nil {
		t.Fatalf("Start with IgnoreSeccomp under an allow-all filter: %v", err)
	}
	dt.Close()
}
