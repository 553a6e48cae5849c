// Package snapshot takes a snapshot of a process's memory at one instant,
// so that a capture with --leave-running reads memory while the target
// runs on. Two kinds:
//
// A write-protect snapshot (Protected) keeps the pause short at any size.
// Prepare registers the target's private anonymous areas with a userfaultfd
// in write-protect mode (created in the target by injection, held here by
// pidfd_getfd) in a short freeze that walks no page table, and ProtectAll
// write-protects every page while the target runs. In the capture's freeze
// Snapshot lists the present pages and protects again the few written
// since, in one PAGEMAP_SCAN walk: that is the instant. A handler goroutine
// then copies each page before the program writes or discards it; ReadAt
// gives the snapshot's content and lifts the protection of what it read;
// every page taken is proved unchanged by its write-protect bit, or the
// read fails with ErrLost (the program unmapped or moved memory not yet
// read): a snapshot is exact or refused. docs/capture.md ("Short pauses")
// lists what the program may do meanwhile. Recipe:
//
//	w, err := snapshot.Prepare(ex, pid, snapshot.Options{}) // ErrNoWP: fork instead
//	w.ProtectAll()                                           // target running
//	t, _ := ex.Seize(pid)                                    // freeze starts
//	maps, _ := proc.Maps()                                   // no page-table walk, unlike smaps
//	err = w.Snapshot(t, maps)                                // the instant
//	... read the areas !w.Covers(start) from the frozen target ...
//	t.Detach()                                               // freeze ends
//	... for each covered area, w.Present(range) pages through w.ReadAt ...
//	err = w.Finish()                                         // ErrLost: capture again
//	w.Close()
//
// A fork snapshot (Fork, type Snapshot, below) is the fallback: its pause grows with
// the size (copying the page tables: 13-47 ms per GiB here).
//
// Fork injects a clone(CLONE_VM) into the target, then a fork into that
// middle process; the fork is the snapshot, the middle process is killed
// and reaped by the target during the freeze. The snapshot is stopped
// under ptrace from birth and never runs user code. The target's process
// tree is left as it was; the snapshot is re-parented to init (or a
// subreaper), which reaps it after Close. It runs setsid first, so its
// zombie never holds the target's process group or session id.
//
// What the snapshot's /proc/PID/pagemap shows (checked in the tests):
//
//   - Anonymous private pages are copied as page table entries that share
//     the pages copy-on-write: present (bit 63), not exclusive (bit 56
//     clear), not file pages (bit 61 clear), in the snapshot and in the
//     target alike. A page the target writes afterwards gets a new copy in
//     the target (exclusive again); the snapshot keeps the old page.
//   - Pages never touched are absent, as in the target.
//   - A private file mapping never written has no anon_vma, so fork copies
//     none of its entries: absent in the snapshot, present with bit 61 in
//     the target. Mappings with written pages are copied whole, bit 61
//     included. Either way "present and not bit 61, or swapped" selects the
//     same pages to save in the snapshot as in the target.
//   - Shared mappings: no entries are copied (absent in the snapshot) and
//     the content is shared, so it is live, not frozen. Take their pagemap
//     from the target (Snapshot.Shared).
//   - MADV_DONTFORK mappings ("dc") do not exist in the snapshot, and
//     MADV_WIPEONFORK mappings ("wf") are empty there (NotCopied, Wiped):
//     read them from the target before detaching it (ParentOnly).
//
// Only the thread that forks is copied; that is all a memory read needs.
// Signals are blocked in the target during the injection and pending
// signals stay queued in it (the snapshot gets none). The snapshot holds
// copies of the target's fds until CloseFiles.
//
// Recipe for capture --leave-running:
//
//	t, _ := ex.Seize(pid)                        // freeze starts
//	sm, _ := proc.Smaps()                        // capture reads it anyway
//	... registers, injected queries, dirty.Tracker.ScanDetail for a delta ...
//	s, err := snapshot.Fork(t, snapshot.Options{Smaps: sm})
//	// on error: read memory from the frozen target as without --leave-running
//	... read s.ParentOnly() areas and shared mappings' pagemap from pid ...
//	t.Detach()                                   // freeze ends; report it
//	s.CloseFiles()
//	... pagemap and process_vm_readv on s.PID() for everything else ...
//	s.Close()
package snapshot
