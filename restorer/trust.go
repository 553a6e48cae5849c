package restorer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ckptimg/ckptimg/format"
)

// Who may restore what (docs/security.md). An image's contents are
// untrusted; what decides whether its recorded credentials may be given is
// who could have written it. This file is pure: host_linux.go learns the
// facts (the restorer's own credentials, the image files' owners).

// Capability numbers (linux/capability.h).
const (
	capSetGID  = 6
	capSetUID  = 7
	capSetPCap = 8
)

// ImageFile is one image file of the chain as the restorer opened it (the
// open file itself, not its path, so a file swapped meanwhile is not
// mistaken for it).
type ImageFile struct {
	Name string
	UID  uint32
	Mode uint32 // st_mode
	// Unknown says why the owner could not be learned ("" when known).
	Unknown string
}

// trusted reports whether only root can have written f: a regular file
// owned by root and writable by neither its group nor others. Its
// directory does not matter: the restorer checks the file it opened.
func (f ImageFile) trusted() bool {
	return f.Unknown == "" && f.UID == 0 && f.Mode&sIFMT == sIFREG && f.Mode&0o022 == 0
}

func (f ImageFile) String() string {
	if f.Unknown != "" {
		return fmt.Sprintf("%s (%s)", f.Name, f.Unknown)
	}
	return fmt.Sprintf("%s (owner uid %d, mode %04o)", f.Name, f.UID, f.Mode&0o7777)
}

const (
	sIFMT   = 0o170000
	sIFREG  = 0o100000
	sIFDIR  = 0o040000
	sIFSOCK = 0o140000
)

// privileged reports whether creds can take ids or capabilities other than
// their own (root, or any effective capability).
func privileged(c *format.Creds) bool {
	return c.UID[1] == 0 || c.CapEff != 0
}

// sameIDs reports whether c asks for nothing the restorer does not have:
// the same user and group ids, groups, and capability sets.
func sameIDs(c, self *format.Creds) bool {
	return c.UID == self.UID && c.GID == self.GID && slices.Equal(sortedGroups(c.Groups), sortedGroups(self.Groups)) &&
		c.CapPrm == self.CapPrm && c.CapEff == self.CapEff && c.CapInh == self.CapInh && c.CapAmb == self.CapAmb
}

// describeCreds names credentials for a message.
func describeCreds(c *format.Creds) string {
	s := fmt.Sprintf("uid %d, gid %d", c.UID[1], c.GID[1])
	if c.UID[0] != c.UID[1] || c.UID[2] != c.UID[1] || c.UID[3] != c.UID[1] {
		s = fmt.Sprintf("uids %d/%d/%d/%d, gid %d", c.UID[0], c.UID[1], c.UID[2], c.UID[3], c.GID[1])
	}
	if len(c.Groups) > 0 {
		s += fmt.Sprintf(", groups %v", c.Groups)
	}
	if c.CapPrm|c.CapEff|c.CapAmb != 0 {
		s += fmt.Sprintf(", capabilities %#x", c.CapPrm|c.CapEff|c.CapAmb)
	}
	return s
}

// ownersCreds reports whether c are ordinary credentials of user uid: every
// user id uid, every group id one of uid's groups, no capabilities. groups
// is nil when the user database does not know uid.
func ownersCreds(c *format.Creds, uid uint32, groups []uint32) bool {
	for _, u := range c.UID {
		if u != uid {
			return false
		}
	}
	if c.CapPrm|c.CapEff|c.CapInh|c.CapAmb != 0 {
		return false
	}
	for _, g := range append(c.GID[:], c.Groups...) {
		if !slices.Contains(groups, g) {
			return false
		}
	}
	return true
}

// checkCreds decides, for every process, whether its recorded credentials
// may be given (who could have written the image) and can be (the
// restorer's own privileges).
func (pl *Plan) checkCreds(host *Host, add func(Problem)) {
	self := host.Self
	if self == nil {
		return
	}
	trusted := len(host.Images) > 0
	owner, oneOwner := uint32(0), true
	var files []string
	for i, f := range host.Images {
		trusted = trusted && f.trusted()
		if f.Unknown != "" || f.Mode&0o022 != 0 || f.Mode&sIFMT != sIFREG || i > 0 && f.UID != owner {
			oneOwner = false
		}
		owner = f.UID
		files = append(files, f.String())
	}
	oneOwner = oneOwner && len(host.Images) > 0 && owner != 0
	var ownerGroups []uint32
	if oneOwner && host.UserGroups != nil {
		ownerGroups, _ = host.UserGroups(owner)
	}
	remedy := "if you trust the image, make it root's and not writable by others (chown root: FILE; chmod go-w FILE), or restore it as the user it belongs to"
	for _, pp := range pl.Procs {
		p := pp.Proc
		c := &p.Creds
		subj := fmt.Sprintf("process %d (%s) credentials", p.PID, p.Comm)
		if !credsRecorded(c) {
			// The process would run with the restorer's own credentials.
			if privileged(self) && !trusted {
				add(Problem{Subject: subj, What: fmt.Sprintf("the image records none, so it would run with ckpt-restart's (%s), and the image file %s can be written by others than root",
					describeCreds(self), strings.Join(files, ", ")), Remedy: remedy})
			}
			continue
		}
		if sameIDs(c, self) && (!privileged(self) || trusted) {
			continue
		}
		// May: an unprivileged restorer can only ever run the program
		// with what the kernel lets it have; a privileged one gives
		// what the image says only when root wrote it, or when it is
		// the image owner's own unprivileged identity.
		if privileged(self) && !trusted && !(oneOwner && ownersCreds(c, owner, ownerGroups)) {
			add(Problem{Subject: subj, What: fmt.Sprintf("the image asks for %s, and the image file %s could have been written by others than root, so these are not granted",
				describeCreds(c), strings.Join(files, ", ")), Remedy: remedy})
			continue
		}
		// Can: the kernel's rules for setresuid, setgroups, capset and
		// the bounding set.
		var need []string
		if c.UID != self.UID && self.CapEff&(1<<capSetUID) == 0 {
			need = append(need, "CAP_SETUID")
		}
		if (c.GID != self.GID || !slices.Equal(sortedGroups(c.Groups), sortedGroups(self.Groups))) && self.CapEff&(1<<capSetGID) == 0 {
			need = append(need, "CAP_SETGID")
		}
		if self.CapBnd&^c.CapBnd != 0 && self.CapEff&(1<<capSetPCap) == 0 {
			need = append(need, "CAP_SETPCAP")
		}
		var what []string
		if len(need) > 0 {
			what = append(what, "setting them needs "+strings.Join(need, ", "))
		}
		if extra := (c.CapPrm | c.CapEff | c.CapAmb) &^ self.CapPrm; extra != 0 {
			what = append(what, fmt.Sprintf("capabilities %#x are not ckpt-restart's to give", extra))
		}
		if len(what) > 0 {
			add(Problem{Subject: subj, What: fmt.Sprintf("the image records %s; ckpt-restart runs as %s: %s",
				describeCreds(c), describeCreds(self), strings.Join(what, "; ")),
				Remedy: "restore it as root, since the image belongs to a more privileged user, or capture the program as the user who restores it"})
		}
	}
}
