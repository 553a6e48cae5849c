package restorer

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// Planning pseudo-terminal pairs whose master is in the image: the master
// becomes a new pair (/dev/ptmx), every slave description of it a new
// description of the new slave, and the session whose controlling terminal
// the slave was gets it back. A slave whose master is outside the image
// is the caller's terminal, as any other terminal.

// maxPTYBuffered bounds the buffered bytes of one side read from the image.
const maxPTYBuffered = 64 << 10

// planPTY plans a pty master, or a slave whose master is in the image
// (linked in planPTYSlaves); it reports false for any other terminal.
func (pl *Plan) planPTY(fp *FilePlan, unsupported func(string)) bool {
	t := fp.File.TTY
	switch {
	case t == nil:
		return false
	case len(t.Buffered) > maxPTYBuffered:
		unsupported(fmt.Sprintf("a pseudo-terminal with %d buffered bytes (at most %d)", len(t.Buffered), maxPTYBuffered))
	case t.Master && t.Index < 0:
		unsupported("a pseudo-terminal master whose index capture could not read")
	case t.Master:
		fp.Source, fp.Note = SrcPTYMaster, fmt.Sprintf("a new pseudo-terminal pair for pty %d", t.Index)
	case t.MasterID != 0:
		fp.Source = SrcPTYSlave
	default:
		return false
	}
	return true
}

// planPTYSlaves links each slave to its master's plan; a slave whose master
// is not made anew (substituted) is the caller's terminal.
func (pl *Plan) planPTYSlaves(opts *Options) {
	for _, fp := range pl.Files {
		if fp.Source != SrcPTYSlave {
			continue
		}
		m := pl.fileByID[fp.File.TTY.MasterID]
		if m == nil || m.Source != SrcPTYMaster {
			fp.Source = 0
			pl.callerTTY(fp, opts)
			continue
		}
		fp.Peer = m
		fp.Note = fmt.Sprintf("the slave of the new pair made for %s (was /dev/pts/%d)", format.FileIDString(m.File.ID), m.File.TTY.Index)
	}
}

// ptySlaves are the slave descriptions of master m, in file-table order.
func (pl *Plan) ptySlaves(m *FilePlan) []*FilePlan {
	var out []*FilePlan
	for _, fp := range pl.Files {
		if fp.Source == SrcPTYSlave && fp.Peer == m {
			out = append(out, fp)
		}
	}
	return out
}

// planControllingTTYs gives each new pair whose slave was a session's
// controlling terminal to that session's leader, when the leader is in the
// image and leads its session again.
func (pl *Plan) planControllingTTYs() {
	for _, m := range pl.Files {
		if m.Source != SrcPTYMaster || m.File.TTY.Session == 0 {
			continue
		}
		t := m.File.TTY
		leader := pl.procByID[t.Session]
		switch {
		case leader == nil || !leader.NewSession:
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("pty %d was the controlling terminal of session %d, which is not restored as a session: it is nobody's controlling terminal now", t.Index, t.Session))
		case len(pl.ptySlaves(m)) == 0:
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("pty %d was the controlling terminal of session %d, but no process holds its slave open: it is nobody's controlling terminal now", t.Index, t.Session))
		default:
			leader.CTTY = m
		}
	}
}
