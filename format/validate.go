package format

import "fmt"

// validateMeta checks every cross-reference of the metadata against the
// chunk table and the hash count, so that code using a Reader's metadata
// can index without checking again. Errors name the record by its path.
func validateMeta(m *Meta, chunks []Chunk, hashCount uint64) error {
	bad := func(path string, format string, args ...any) error {
		return corrupt("metadata", 0, "%s: %s", path, fmt.Sprintf(format, args...))
	}
	ps := uint64(m.Machine.PageSize)
	if ps < 4096 || ps > MaxPageSize || ps&(ps-1) != 0 {
		return bad("machine.page_size", "%d is not a power of two between 4096 and %d", ps, MaxPageSize)
	}
	for i, s := range m.Machine.VDSO {
		if s.Flags&^MapSpecial != 0 || s.Flags == 0 || s.Size%ps != 0 {
			return bad(fmt.Sprintf("machine.vdso[%d]", i), "flags %s size %d", s.Flags, s.Size)
		}
	}
	fileIDs := make(map[uint32]bool, len(m.Files))
	for i := range m.Files {
		f := &m.Files[i]
		path := func() string { return fmt.Sprintf("files[%d]", i) }
		if f.ID == 0 || fileIDs[f.ID] {
			return bad(path(), "file id %d is zero or repeated", f.ID)
		}
		fileIDs[f.ID] = true
		if f.Contents > uint32(len(m.Blobs)) {
			return bad(path(), "contents blob %d of %d", f.Contents, len(m.Blobs))
		}
		if t := tcpOf(f); t != nil && (t.SendQueueBlob > uint32(len(m.Blobs)) || t.RecvQueueBlob > uint32(len(m.Blobs))) {
			return bad(path(), "tcp queue blob %d/%d of %d", t.SendQueueBlob, t.RecvQueueBlob, len(m.Blobs))
		}
		if f.Socket != nil && f.Socket.QueuedBlob > uint32(len(m.Blobs)) {
			return bad(path(), "socket queue blob %d of %d", f.Socket.QueuedBlob, len(m.Blobs))
		}
		if f.Pipe != nil && f.Pipe.BufferedBlob > uint32(len(m.Blobs)) {
			return bad(path(), "pipe buffer blob %d of %d", f.Pipe.BufferedBlob, len(m.Blobs))
		}
		for _, l := range f.Locks {
			if l.Start < 0 || l.Len < 0 {
				return bad(path(), "lock range %d+%d negative", l.Start, l.Len)
			}
		}
	}
	for i := range m.Files {
		if t := m.Files[i].TTY; t != nil && t.MasterID != 0 && !fileIDs[t.MasterID] {
			return bad(fmt.Sprintf("files[%d].tty", i), "unknown master file id %d", t.MasterID)
		}
		if ep := m.Files[i].Epoll; ep != nil {
			for j, t := range ep.Targets {
				if t.FileID != 0 && !fileIDs[t.FileID] {
					return bad(fmt.Sprintf("files[%d].epoll.targets[%d]", i, j), "unknown file id %d", t.FileID)
				}
			}
		}
	}
	// Extents follow each other through the chunks, blob after blob, as a
	// writer lays them out: no byte is used twice, so the blobs hold no
	// more bytes than the chunks do, and reading them in order decodes
	// each chunk once.
	var prevChunk, prevEnd uint64
	for i, b := range m.Blobs {
		var sum uint64
		for j, e := range b.Extents {
			if int(e.Chunk) >= len(chunks) || uint64(e.Offset)+uint64(e.Length) > uint64(chunks[e.Chunk].PlainLen) {
				return bad(fmt.Sprintf("blobs[%d].extents[%d]", i, j), "chunk %d offset %d length %d is outside the chunk table", e.Chunk, e.Offset, e.Length)
			}
			if c := uint64(e.Chunk); c < prevChunk || c == prevChunk && uint64(e.Offset) < prevEnd {
				return bad(fmt.Sprintf("blobs[%d].extents[%d]", i, j), "chunk %d offset %d comes before the end of the previous extent (chunk %d offset %d): extents overlap or go back", e.Chunk, e.Offset, prevChunk, prevEnd)
			}
			prevChunk, prevEnd = uint64(e.Chunk), uint64(e.Offset)+uint64(e.Length)
			sum += uint64(e.Length)
		}
		if sum != b.Size {
			return bad(fmt.Sprintf("blobs[%d]", i), "extents hold %d bytes, size is %d", sum, b.Size)
		}
	}
	if err := validateIPC(m, bad); err != nil {
		return err
	}
	for i, s := range m.Substs {
		path := fmt.Sprintf("substs[%d]", i)
		if !fileIDs[s.FileID] {
			return bad(path, "unknown file id %d", s.FileID)
		}
		if s.Kind < SubstFD || s.Kind > SubstTTY {
			return bad(path, "unknown kind %d", s.Kind)
		}
	}
	pids := map[int32]bool{}
	for pi := range m.Processes {
		p := &m.Processes[pi]
		ppath := fmt.Sprintf("processes[%d]", pi)
		if p.PID <= 0 || pids[p.PID] {
			return bad(ppath, "pid %d is not positive or repeated", p.PID)
		}
		pids[p.PID] = true
		tids := map[int32]bool{}
		for ti := range p.Threads {
			t := &p.Threads[ti]
			tpath := func() string { return fmt.Sprintf("%s.threads[%d]", ppath, ti) } // built only for an error
			if t.TID <= 0 || tids[t.TID] {
				return bad(tpath(), "tid %d is not positive or repeated", t.TID)
			}
			tids[t.TID] = true
			if r := t.Regs.ARM64; r != nil && len(r.X) != 31 {
				return bad(tpath(), "arm64 record has %d x registers, want 31", len(r.X))
			}
		}
		fds := map[int32]bool{}
		for fi, fd := range p.FDs {
			if fd.Num < 0 || fds[fd.Num] || !fileIDs[fd.FileID] {
				return bad(fmt.Sprintf("%s.fds[%d]", ppath, fi), "fd %d is negative or repeated, or file id %d unknown", fd.Num, fd.FileID)
			}
			fds[fd.Num] = true
		}
		for li, l := range p.Locks {
			if !fds[l.FD] || l.Start < 0 || l.Len < 0 {
				return bad(fmt.Sprintf("%s.locks[%d]", ppath, li), "lock on fd %d that is not in the fd table, or range %d+%d negative", l.FD, l.Start, l.Len)
			}
		}
		var prevEnd uint64
		for ai := range p.Areas {
			a := &p.Areas[ai]
			apath := func() string { return fmt.Sprintf("%s.areas[%d]", ppath, ai) } // built only for an error
			if a.Start%ps != 0 || a.End%ps != 0 || a.Start >= a.End || a.Start < prevEnd {
				return bad(apath(), "%#x-%#x is not page aligned, empty, or overlaps the previous area", a.Start, a.End)
			}
			prevEnd = a.End
			if a.Shm != 0 && (m.IPC == nil || int(a.Shm) > len(m.IPC.Shm)) {
				return bad(apath(), "shm segment %d is not in the IPC table", a.Shm)
			}
			if a.Shmem != 0 && (m.IPC == nil || int(a.Shmem) > len(m.IPC.Shmem)) {
				return bad(apath(), "shmem object %d is not in the IPC table", a.Shmem)
			}
			if a.Prot&^(ProtRead|ProtWrite|ProtExec) != 0 {
				return bad(apath(), "protection %#x", uint32(a.Prot))
			}
			next := a.Start
			for ri := range a.Runs {
				r := &a.Runs[ri]
				rpath := func() string { return fmt.Sprintf("%s.runs[%d]", apath(), ri) } // built only for an error
				// r.Addr >= a.End first: past the area, a.End-r.Addr wraps
				// and would let any number of pages through.
				if r.Pages == 0 || r.Addr%ps != 0 || r.Addr < next || r.Addr >= a.End || r.Pages > (a.End-r.Addr)/ps {
					return bad(rpath(), "%d pages at %#x are not inside the area after the previous run", r.Pages, r.Addr)
				}
				next = r.Addr + r.Pages*ps
				switch r.Kind {
				case RunData:
					if int(r.Chunk) >= len(chunks) || uint64(r.Offset)+r.Pages*ps > uint64(chunks[r.Chunk].PlainLen) {
						return bad(rpath(), "chunk %d offset %d for %d pages is outside the chunk table", r.Chunk, r.Offset, r.Pages)
					}
				case RunParent:
					if m.Parent == nil {
						return bad(rpath(), "pages in the parent, but the image has no parent")
					}
				case RunZero:
					continue
				default:
					return bad(rpath(), "unknown run kind %d", r.Kind)
				}
				if r.HashIndex > hashCount || r.Pages > hashCount-r.HashIndex {
					return bad(rpath(), "hashes %d+%d are outside the table of %d", r.HashIndex, r.Pages, hashCount)
				}
			}
		}
	}
	return nil
}
