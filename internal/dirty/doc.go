// Package dirty tracks which pages of a live process are written between
// two captures, from outside the process, so a delta capture reads only
// those.
//
// This kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY unset: writing
// clear_refs is accepted but pagemap bit 55 is never set), so the Tracker
// uses a userfaultfd in asynchronous write-protect mode
// (UFFD_FEATURE_WP_ASYNC, Linux 6.7) registered over the target's private
// mappings: the kernel resolves the write faults itself, no process has to
// serve them, and the PAGEMAP_SCAN ioctl on /proc/PID/pagemap reports the
// pages written since the last scan and write-protects them again in one
// walk. The userfaultfd must be created inside the target (a userfaultfd
// only registers its own process's memory), so Start injects it through
// package ptrace; this process then holds it through pidfd_getfd.
//
// What the scan guarantees: a page whose content changed since the
// previous scan is in ScanResult.Dirty(), whether user code, the kernel
// (read(2) into it, process_vm_writev) or a debugger wrote it. Mappings
// created or moved after Start, and any mapping whose registration was
// lost, are reported whole (Untracked). Pages dropped with MADV_DONTNEED
// are not reported: pagemap shows them absent, which is what a capture
// must record. Not seen: writes through pages pinned before the scan and
// written by a device or by the kernel without faulting (O_DIRECT reads
// in flight, io_uring fixed buffers, RDMA), the same limit soft-dirty has.
//
// Recipe for capture (full capture that starts a chain, ckptimg capture
// --track or interval mode):
//
//	t, _ := ex.Seize(pid)                          // frozen
//	maps, _ := procfs.NewFS("").Proc(pid).Maps()
//	tr, err := dirty.Start(t, dirty.Trackable(maps), dirty.Options{KeepFD: true})
//	// errors.Is(err, dirty.ErrNotSupported / ErrConflict): full captures only
//	st := tr.State()                               // store in the image
//	... read every present page as usual ...       // tracking runs from Start
//	t.Detach(); tr.Close()
//
// The capture skips fd st.FD of the target (st.IsTrackerFD(n)): it is the
// tracker's userfaultfd, close-on-exec, never restored.
//
// Delta capture (capture --parent, a new ckptimg process):
//
//	tr, err := dirty.Resume(st)                    // st from the parent image
//	// errors.Is(err, dirty.ErrLost): the fd was closed or the process exec'd: full capture
//	t, _ := ex.Seize(pid)
//	maps, _ := ...Maps()
//	res, _ := tr.ScanDetail(pid, dirty.Trackable(maps)) // inside the freeze, before reading
//	for each private page: present/swapped and in res.Dirty() -> save it;
//	                       present/swapped and not in it  -> "in parent";
//	                       neither                         -> absent.
//	shared mappings are not tracked: save them as in a full capture.
//	info: method uffd-wp, res.Pages() written pages.
//
// With --leave-running, scan in the freeze, then snapshot.Fork, detach,
// and read the dirty pages from the snapshot (see internal/snapshot).
// In interval mode, Start once with Options{} (the target's fd table stays
// unchanged; tracking lives as long as the Tracker) and ScanDetail at each
// capture. Stop(t) ends tracking and removes the fd from the target.
package dirty
