package kabi

import (
	"testing"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

func TestLock(t *testing.T) {
	for _, tc := range []struct {
		in   procfs.Lock
		want format.Lock
		ok   bool
	}{
		{procfs.Lock{Kind: "FLOCK", Write: true, End: -1}, format.Lock{Kind: format.LockFlock, Mode: format.LockWrite}, true},
		{procfs.Lock{Kind: "POSIX", Start: 10, End: 29}, format.Lock{Kind: format.LockPOSIX, Mode: format.LockRead, Start: 10, Len: 20}, true},
		{procfs.Lock{Kind: "OFDLCK", Write: true, Start: 5, End: -1}, format.Lock{Kind: format.LockOFD, Mode: format.LockWrite, Start: 5}, true},
		{procfs.Lock{Kind: "LEASE", End: -1}, format.Lock{Kind: format.LockLease, Mode: format.LockRead}, true},
		{procfs.Lock{Kind: "DELEG", End: -1}, format.Lock{Mode: format.LockRead}, false},
	} {
		got, ok := Lock(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Lock(%+v) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
