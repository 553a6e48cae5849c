package restorer

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/procfs"
)

// Credentials are per thread in the kernel (glibc's setuid broadcasts to
// every thread), so each thread of a restored process is given the
// recorded ones from inside, by injected calls. This is the last step that
// runs injected code before the registers: every earlier one (clone3 with
// set_tid, PR_SET_MM_MAP with an exe fd) needs the restorer's privilege,
// which the process gives up here.

// prctl options and the capability ABI (linux/prctl.h, linux/capability.h).
const (
	prCapAmbient      = 47
	prCapAmbientRaise = 2
	linuxCapV3        = 0x20080522
)

// credsRecorded reports whether the image recorded credentials at all (an
// empty bounding set means the record is missing: no real process has one
// and a uid 0).
func credsRecorded(c *format.Creds) bool {
	return c.CapBnd != 0 || c.UID != [4]uint32{} || c.GID != [4]uint32{} || len(c.Groups) > 0 || c.CapPrm != 0
}

// sameCreds compares recorded credentials with a status of a live task.
func sameCreds(c *format.Creds, st *procfs.Status) bool {
	return c.UID == st.Uid && c.GID == st.Gid && slices.Equal(sortedGroups(c.Groups), sortedGroups(st.Groups)) &&
		c.CapInh == st.CapInh && c.CapPrm == st.CapPrm && c.CapEff == st.CapEff && c.CapBnd == st.CapBnd &&
		c.CapAmb == st.CapAmb && c.NoNewPrivs == st.NoNewPrivs
}

func sortedGroups(g []uint32) []uint32 {
	g = slices.Clone(g)
	slices.Sort(g)
	return g
}

// lastCap is the highest capability this kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return n
}

// setCreds gives every thread the recorded user and group ids,
// supplementary groups, capability sets, bounding and ambient sets and
// no_new_privs. Nothing is done when they are the restorer's own (the
// process was forked from it and has them already).
func (r *restore) setCreds(lp *liveProc) error {
	p := lp.pp.Proc
	c := &p.Creds
	if !credsRecorded(c) {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("process %d (%s): the image records no credentials; it runs with ckpt-restart's", p.PID, p.Comm))
		return nil
	}
	st, err := procfs.NewFS("").Proc(lp.pid).Status()
	if err != nil {
		return err
	}
	if sameCreds(c, st) {
		return nil
	}
	if len(c.Groups) > scratchSize/4 {
		return fmt.Errorf("%w: %d supplementary groups", ErrUnsupported, len(c.Groups))
	}
	top := lastCap()
	for i := range p.Threads {
		th := &p.Threads[i]
		tid := lp.tids[th.TID]
		groupsChange := !slices.Equal(sortedGroups(c.Groups), sortedGroups(st.Groups))
		if err := lp.setThreadCreds(tid, c, top, st.Uid != c.UID, groupsChange); err != nil {
			return &Error{Step: "credentials", PID: p.PID, TID: th.TID, Err: err}
		}
	}
	return nil
}

func (lp *liveProc) setThreadCreds(tid int, c *format.Creds, top int, uidChanges, groupsChange bool) error {
	// The bounding set can only shrink, and only with CAP_SETPCAP: first.
	for cp := 0; cp <= top && cp < 64; cp++ {
		if c.CapBnd&(1<<cp) == 0 {
			if _, err := lp.call(fmt.Sprintf("prctl(PR_CAPBSET_DROP, %d)", cp), tid, unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(cp)); err != nil {
				return err
			}
		}
	}
	// Left alone when they are the recorded ones already: in a user
	// namespace (--userns) setgroups is denied.
	if groupsChange {
		groups := make(buf, 0, 4*len(c.Groups))
		for _, g := range c.Groups {
			groups = groups.u32(g)
		}
		at := lp.scratch.Addr
		if len(groups) > 0 {
			var err error
			if at, err = lp.mem(0, groups); err != nil {
				return err
			}
		}
		if _, err := lp.call("setgroups", tid, unix.SYS_SETGROUPS, uintptr(len(c.Groups)), at); err != nil {
			return err
		}
	}
	if _, err := lp.call(fmt.Sprintf("setresgid(%d, %d, %d)", c.GID[0], c.GID[1], c.GID[2]), tid, unix.SYS_SETRESGID, uintptr(c.GID[0]), uintptr(c.GID[1]), uintptr(c.GID[2])); err != nil {
		return err
	}
	// setfsgid and setfsuid return the old id, never an error.
	lp.call("setfsgid", tid, unix.SYS_SETFSGID, uintptr(c.GID[3]))
	if uidChanges {
		// Keep the permitted set across the change of uid, so the
		// recorded sets can be chosen from it below.
		if _, err := lp.call("prctl(PR_SET_KEEPCAPS, 1)", tid, unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1); err != nil {
			return err
		}
	}
	if _, err := lp.call(fmt.Sprintf("setresuid(%d, %d, %d)", c.UID[0], c.UID[1], c.UID[2]), tid, unix.SYS_SETRESUID, uintptr(c.UID[0]), uintptr(c.UID[1]), uintptr(c.UID[2])); err != nil {
		return err
	}
	lp.call("setfsuid", tid, unix.SYS_SETFSUID, uintptr(c.UID[3]))
	hdr := buf(nil).u32(linuxCapV3).u32(0)
	data := buf(nil).u32(uint32(c.CapEff)).u32(uint32(c.CapPrm)).u32(uint32(c.CapInh)).
		u32(uint32(c.CapEff >> 32)).u32(uint32(c.CapPrm >> 32)).u32(uint32(c.CapInh >> 32))
	ha, err := lp.mem(0, hdr)
	if err != nil {
		return err
	}
	da, err := lp.mem(64, data)
	if err != nil {
		return err
	}
	if _, err := lp.call(fmt.Sprintf("capset(eff %#x, prm %#x, inh %#x)", c.CapEff, c.CapPrm, c.CapInh), tid, unix.SYS_CAPSET, ha, da); err != nil {
		return err
	}
	if uidChanges {
		if _, err := lp.call("prctl(PR_SET_KEEPCAPS, 0)", tid, unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0); err != nil {
			return err
		}
	}
	for cp := 0; cp < 64; cp++ {
		if c.CapAmb&(1<<cp) != 0 {
			if _, err := lp.call(fmt.Sprintf("prctl(PR_CAP_AMBIENT_RAISE, %d)", cp), tid, unix.SYS_PRCTL, prCapAmbient, prCapAmbientRaise, uintptr(cp), 0, 0); err != nil {
				return err
			}
		}
	}
	if c.NoNewPrivs {
		if _, err := lp.call("prctl(PR_SET_NO_NEW_PRIVS)", tid, unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	// A change of ids makes the process non-dumpable, which a program
	// started under its own ids is not: its /proc files would be root's.
	_, err = lp.call("prctl(PR_SET_DUMPABLE, 1)", tid, unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, 1)
	return err
}

// setFSCreds gives the main thread the recorded file-system ids and
// supplementary groups before anything opens a path in it (mapped files,
// the exe link, the working directory), so that those are resolved with
// the rights of the restored program and not of ckpt-restart. The other
// credentials follow in setCreds, after the steps that need privilege;
// the file-system ids do not take any of those (CAP_SYS_PTRACE,
// CAP_CHECKPOINT_RESTORE, CAP_SYS_RESOURCE, CAP_SETUID stay).
func (r *restore) setFSCreds(lp *liveProc) error {
	c := &lp.pp.Proc.Creds
	if !credsRecorded(c) {
		return nil
	}
	st, err := procfs.NewFS("").Proc(lp.pid).Status()
	if err != nil {
		return err
	}
	if c.UID[3] == st.Uid[3] && c.GID[3] == st.Gid[3] && slices.Equal(sortedGroups(c.Groups), sortedGroups(st.Groups)) {
		return nil
	}
	if len(c.Groups) > scratchSize/4 {
		return fmt.Errorf("%w: %d supplementary groups", ErrUnsupported, len(c.Groups))
	}
	groups := make(buf, 0, 4*len(c.Groups))
	for _, g := range c.Groups {
		groups = groups.u32(g)
	}
	at := lp.scratch.Addr
	if len(groups) > 0 {
		if at, err = lp.mem(0, groups); err != nil {
			return err
		}
	}
	if _, err := lp.call("setgroups", lp.pid, unix.SYS_SETGROUPS, uintptr(len(c.Groups)), at); err != nil {
		return err
	}
	lp.call("setfsgid", lp.pid, unix.SYS_SETFSGID, uintptr(c.GID[3]))
	lp.call("setfsuid", lp.pid, unix.SYS_SETFSUID, uintptr(c.UID[3]))
	// Both return the old id, never an error: read the result back.
	if st, err = procfs.NewFS("").Proc(lp.pid).Status(); err != nil {
		return err
	}
	if st.Uid[3] != c.UID[3] || st.Gid[3] != c.GID[3] {
		return fmt.Errorf("could not take file-system uid %d and gid %d (now %d, %d)", c.UID[3], c.GID[3], st.Uid[3], st.Gid[3])
	}
	return nil
}
