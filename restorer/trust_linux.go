package restorer

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// selfCreds reads the restorer's own credentials.
func selfCreds() (*format.Creds, error) {
	st, err := procfs.NewFS("").Self().Status()
	if err != nil {
		return nil, fmt.Errorf("restorer: reading own status: %w", err)
	}
	return &format.Creds{UID: st.Uid, GID: st.Gid, Groups: st.Groups, CapInh: st.CapInh, CapPrm: st.CapPrm,
		CapEff: st.CapEff, CapBnd: st.CapBnd, CapAmb: st.CapAmb, NoNewPrivs: st.NoNewPrivs}, nil
}

// imageFiles describes the chain's image files as they were opened: the
// owner and mode of the open file, so that swapping a path after the open
// changes nothing.
func imageFiles(chain *format.Chain) []ImageFile {
	var out []ImageFile
	for _, img := range chain.Images() {
		f := img.File()
		if f == nil {
			out = append(out, ImageFile{Name: fmt.Sprintf("image %s", img.ID()), Unknown: "not read from a file ckpt-restart can check"})
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			out = append(out, ImageFile{Name: f.Name(), Unknown: err.Error()})
			continue
		}
		out = append(out, ImageFile{Name: f.Name(), UID: st.Uid, Mode: st.Mode})
	}
	return out
}

// userGroups returns uid's primary and supplementary groups from the user
// database (/etc/passwd and /etc/group: the binary is static).
func userGroups(uid uint32) ([]uint32, bool) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, false
	}
	ids, err := u.GroupIds()
	if err != nil {
		ids = []string{u.Gid}
	}
	var out []uint32
	for _, s := range append(ids, u.Gid) {
		if g, err := strconv.ParseUint(s, 10, 32); err == nil {
			out = append(out, uint32(g))
		}
	}
	return out, true
}

// bindProbe binds a socket as openSocket would, with c's file-system
// credentials, and closes it at once. A unix socket with a path is not
// bound (that would create the file): its directory must let the program's
// user create it, and a socket file already there must be stale, which
// connecting to it tells (a program listening there sees a connection
// closed at once).
func bindProbe(c *format.Creds, s *format.SocketInfo) error {
	return ignoreFSIDs(asUser(c, func() error {
		if s.Family == unix.AF_UNIX && !strings.HasPrefix(s.Local, "@") {
			st, err := os.Lstat(s.Local)
			switch {
			case errors.Is(err, os.ErrNotExist):
				dir := filepath.Dir(s.Local)
				if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
					return &os.PathError{Op: "create a socket in", Path: dir, Err: err}
				}
				return nil
			case err != nil:
				return err
			case st.Mode()&os.ModeSocket == 0:
				return fmt.Errorf("%s: %w (a file that is not a socket is there)", s.Local, unix.EADDRINUSE)
			case !staleUnixSocket(s.Local):
				return fmt.Errorf("%s: %w", s.Local, unix.EADDRINUSE)
			}
			return nil
		}
		fd, err := unix.Socket(int(s.Family), int(s.Type)|unix.SOCK_CLOEXEC, int(s.Protocol))
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		if s.Family == unix.AF_NETLINK {
			return bindNetlink(fd, s.Netlink)
		}
		sa, err := sockaddr(s)
		if err != nil {
			return err
		}
		if s.Family != unix.AF_UNIX {
			if err := setInetBindOptions(fd, s); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return os.NewSyscallError("bind", err)
		}
		return nil
	}))
}

// openProbe opens path as the restore will (with c's file-system
// credentials) and closes it.
func openProbe(c *format.Creds, path string, flags int) error {
	return ignoreFSIDs(asUser(c, func() error {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: path, Err: err}
		}
		return unix.Close(fd)
	}))
}

// ignoreFSIDs drops the error of a probe the restorer could not run as the
// program's user: the credential check names that problem once.
func ignoreFSIDs(err error) error {
	if errors.Is(err, errFSIDs) {
		return nil
	}
	return err
}

// errFSIDs: the restorer may not take a program's file-system ids.
var errFSIDs = errors.New("cannot take the program's file-system ids and groups to open its files")

// asUser runs fn on an OS thread whose file-system user and group ids and
// supplementary groups are c's, so that every path fn opens is resolved,
// symbolic links included, with the rights the restored process will have.
// Credentials are per thread in the kernel; the raw syscalls change only
// this thread (x/sys's Setgroups and Setfsuid change every thread of the
// process). The thread gets its own credentials back before it serves
// other goroutines; if that fails it stays locked, and the runtime ends it
// (or parks it forever, for the main thread) with the goroutine. Without
// recorded credentials fn runs as the restorer.
func asUser(c *format.Creds, fn func() error) error {
	if c == nil || !credsRecorded(c) {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		oldGroups, err := threadGetgroups()
		if err != nil {
			done <- fmt.Errorf("getgroups: %w", err)
			return
		}
		setGroups := !slices.Equal(sortedGroups(oldGroups), sortedGroups(c.Groups))
		if setGroups {
			if err := threadSetgroups(c.Groups); err != nil {
				restored = true
				done <- fmt.Errorf("%w (groups %v): %w", errFSIDs, c.Groups, err)
				return
			}
		}
		oldGID, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, uintptr(c.GID[3]), 0, 0)
		oldUID, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, uintptr(c.UID[3]), 0, 0)
		err = nil
		if uid, gid := fsIDs(); uid != c.UID[3] || gid != c.GID[3] {
			err = fmt.Errorf("%w (uid %d, gid %d): %w", errFSIDs, c.UID[3], c.GID[3], unix.EPERM)
		} else {
			err = fn()
		}
		unix.RawSyscall(unix.SYS_SETFSUID, oldUID, 0, 0)
		unix.RawSyscall(unix.SYS_SETFSGID, oldGID, 0, 0)
		uid, gid := fsIDs()
		restored = uid == uint32(oldUID) && gid == uint32(oldGID) && (!setGroups || threadSetgroups(oldGroups) == nil)
		done <- err
	}()
	return <-done
}

// fsIDs returns the calling thread's file-system uid and gid: setfsuid
// and setfsgid return the previous id, and an invalid one changes nothing.
func fsIDs() (uid, gid uint32) {
	u, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0)
	g, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0)
	return uint32(u), uint32(g)
}
