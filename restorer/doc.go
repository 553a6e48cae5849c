// Package restorer recreates the process tree recorded in a checkpoint
// image (package format) on the running Linux kernel and lets it go on
// where it stopped. It is the library behind ckpt-restart.
//
// A restore is a Session. NewSession reads the image's metadata (a copy:
// the image's own is never changed), applies Options.Rewrite (restart-time
// remaps and substitutions) and plans the work once: the Plan lists the
// processes parents first, each with its memory areas (AreaPlan), its fds
// (FDPlan) and the open file descriptions they share (FilePlan, with the
// Source each is made from). Planning reads no page and touches nothing;
// what the image alone rules out (a zombie, seccomp strict mode, a socket
// that cannot be reconnected) is collected in Plan.Problems.
//
// The session's methods, in the order a caller uses them:
//
//   - CheckHost runs every check of the plan against a Host, a description
//     of a machine (architecture, page size, CPU state, vDSO, free PIDs,
//     the files the image names, who may restore whose credentials); it is
//     pure. LiveHost describes this machine.
//   - Check verifies every chunk of every image of the chain and runs the
//     checks against this machine, trying what can be tried without side
//     effects (binding listening sockets, opening files as the program's
//     user). Nothing is touched but a stub process it starts and kills.
//   - Simulate prints the plan, step by step, without running anything.
//   - Restore runs the checks against this machine (without reading every
//     chunk) and, when they find no problem, recreates the tree: it forks the processes from a stub (ckpt-restart
//     itself, stopped at its exec) with their recorded PIDs, then per
//     process clears the stub, moves the vDSO, maps the areas and writes
//     their pages, sets the mm fields and the process state, installs the
//     fds, creates the threads, gives them their state and credentials and
//     last their registers, and detaches. It returns a Restored: the pids
//     now, and the warnings.
//
// Every problem the checks find is reported at once in a *CheckError,
// each Problem with what to do about it; a failure during Restore kills
// whatever was created and is an *Error naming the step, the process and
// the thread. Errors about what this restorer cannot recreate match
// ErrUnsupported.
//
// What happens once the program runs is the caller's: the restorer makes
// the tree and lets it go. ckpt-restart waits for it as a shell waits for
// a job, handing it the terminal in Options.BeforeRun and forwarding
// signals. See docs/restore.md for the command and what is restored, and
// docs/security.md for whose credentials are given.
package restorer

// The files, by job. Pure (no kernel, testable anywhere): session.go and
// options.go (the API) and errors.go; plan.go (the processes and their
// memory) and plan_files.go (the file table) make the Plan; check.go and
// trust.go check it against a Host; simulate.go prints it. Live:
// host_linux.go and trust_linux.go describe this machine; restore_linux.go
// runs a restore step by step, the steps grouped by subject:
// procs_linux.go (forking the tree, process state), mm_linux.go (the
// address space), memory_linux.go with uffd_linux.go (the pages),
// advice_linux.go, files_linux.go and anonfiles_linux.go (making the open
// files), fds_linux.go (installing them), threads_linux.go (threads and
// registers) and creds_linux.go (credentials); pidns_linux.go and
// timens_linux.go make the new PID and time namespaces of Options.PIDNS
// and Options.TimeNS (the namespace's init is RunInit).
