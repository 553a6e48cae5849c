package restorer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/uffd"
)

// The page server of a lazy restore (see lazy_linux.go for the design).

// RunLazyServer is the page server (argv[0] LazyServerName), started by a
// lazy restore with its plan on stdin; it returns the exit status.
func RunLazyServer(args []string) int {
	if len(args) != 0 {
		fmt.Fprintf(os.Stderr, "%s: run by ckpt-restart --lazy only\n", LazyServerName)
		return 2
	}
	s, err := newLazyServer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ckpt-restart: page server: %v\n", err)
		return 1
	}
	// Best effort: the OOM killer would leave the program reading zeros.
	os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	signal.Notify(s.term, syscall.SIGTERM)
	os.Stdout.WriteString("ready\n")
	if null, err := os.Open(os.DevNull); err == nil {
		unix.Dup2(int(null.Fd()), 1)
		null.Close()
	}
	return s.run()
}

type lazyServer struct {
	plan    lazyPlan
	images  []*format.Reader
	pidfd   int
	targets []*lazyTarget
	term    chan os.Signal
	start   time.Time
	running chan struct{} // closed when stdin ends: the program runs

	// The chunk last read, verified.
	buf    format.ChunkBuffer
	cached struct{ level, chunk int }
	plain  []byte

	copied, zeroed, faults uint64
	bad                    bool
}

// lazyTarget is one mm the server fills: the restored process's, or a
// child's it forked before the server was done.
type lazyTarget struct {
	fd   int
	todo []lazyPiece // sorted by address, disjoint
	// retry are faults to serve again: the mm was changing (EAGAIN).
	retry []uint64
	root  bool
}

func newLazyServer() (*lazyServer, error) {
	s := &lazyServer{pidfd: 4, term: make(chan os.Signal, 1), start: time.Now(), running: make(chan struct{})}
	s.cached.level = -1
	dec := json.NewDecoder(os.Stdin)
	if err := dec.Decode(&s.plan); err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	go func() {
		io.Copy(io.Discard, dec.Buffered())
		io.Copy(io.Discard, os.Stdin)
		close(s.running)
	}()
	if s.plan.PageSize == 0 || s.plan.PageSize&(s.plan.PageSize-1) != 0 {
		return nil, fmt.Errorf("page size %d", s.plan.PageSize)
	}
	for i, name := range s.plan.Images {
		f := os.NewFile(uintptr(5+i), name)
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		r, err := format.NewReader(f, st.Size())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		s.images = append(s.images, r)
	}
	todo := slices.Clone(s.plan.Pieces)
	slices.SortFunc(todo, func(a, b lazyPiece) int { return compareAddr(a.Addr, b.Addr) })
	s.targets = []*lazyTarget{{fd: 3, todo: todo, root: true}}
	return s, nil
}

func compareAddr(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *lazyServer) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ckpt-restart: lazy pages: process %d (pid %d): "+format+"\n",
		append([]any{s.plan.PID, s.plan.Now}, args...)...)
}

// run serves faults and events first, and otherwise fills the next
// pieces in address order, until every target is filled or gone.
func (s *lazyServer) run() int {
	msgs := make([]byte, 64*uffd.MsgSize)
	for len(s.targets) > 0 {
		select {
		case <-s.term:
			s.logf("page server stopped by SIGTERM with pages still to fill: killing the process")
			s.killRoot()
			for _, t := range s.targets {
				s.poison(t, t.todo)
			}
			return 1
		default:
		}
		for i := 0; i < len(s.targets); i++ {
			s.events(s.targets[i], msgs)
		}
		if s.rootGone() {
			// Exited, killed, or a failed restore killed it: its part is
			// over (forked children go on).
			for _, t := range s.targets {
				if t.root && t.fd >= 0 {
					unix.Close(t.fd)
					t.fd, t.todo, t.retry = -1, nil, nil
				}
			}
			s.drop()
			continue
		}
		select {
		case <-s.running:
		default:
			// The restore goes on: faults only.
			s.wait(time.Millisecond)
			continue
		}
		// Background: the first target with something left.
		var t *lazyTarget
		for _, c := range s.targets {
			if len(c.todo) > 0 {
				t = c
				break
			}
		}
		if t == nil {
			break
		}
		if errors.Is(s.fill(t, t.todo[0].Addr, t.todo[0].Addr+lazyStep), unix.EAGAIN) {
			// An event is on its way: wait for it.
			s.wait(time.Millisecond)
		}
		s.drop()
	}
	// Done: closing each userfaultfd unregisters its areas, so the pages
	// no piece held (never touched, or given back) are plain zero pages.
	for _, t := range s.targets {
		unix.Close(t.fd)
	}
	if s.plan.Verbose {
		s.logf("all pages in after %v: %d MiB copied, %d MiB zero pages, %d faults served",
			time.Since(s.start).Round(time.Millisecond), s.copied>>20, s.zeroed>>20, s.faults)
	}
	if s.bad {
		return 1
	}
	return 0
}

// rootGone reports whether the restored process has exited.
func (s *lazyServer) rootGone() bool {
	if s.pidfd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(s.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
}

// wait waits at most d for a message on any target.
func (s *lazyServer) wait(d time.Duration) {
	fds := make([]unix.PollFd, 0, len(s.targets))
	for _, t := range s.targets {
		if t.fd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(t.fd), Events: unix.POLLIN})
		}
	}
	unix.Poll(fds, int(d.Milliseconds()))
}

// drop forgets the targets that are done or gone (fd -1).
func (s *lazyServer) drop() {
	s.targets = slices.DeleteFunc(s.targets, func(t *lazyTarget) bool {
		if t.fd >= 0 && len(t.todo) == 0 && len(t.retry) == 0 {
			unix.Close(t.fd)
			t.fd = -1
		}
		return t.fd < 0
	})
}

// events reads and handles t's pending messages.
func (s *lazyServer) events(t *lazyTarget, buf []byte) {
	for t.fd >= 0 {
		retry := t.retry
		t.retry = nil
		for _, addr := range retry {
			s.fault(t, addr)
		}
		n, err := unix.Read(t.fd, buf)
		if err != nil || n < uffd.MsgSize {
			return
		}
		for b := buf[:n]; len(b) >= uffd.MsgSize; b = b[uffd.MsgSize:] {
			s.event(t, uffd.Msg(b[:uffd.MsgSize]))
		}
	}
}

// event handles one struct uffd_msg.
func (s *lazyServer) event(t *lazyTarget, m uffd.Msg) {
	switch m.Event() {
	case uffd.EventPagefault:
		s.faults++
		s.fault(t, m.PagefaultAddress())
	case uffd.EventFork:
		fd := m.ForkFD()
		unix.SetNonblock(fd, true)
		unix.CloseOnExec(fd)
		// The child's missing pages are those missing in the parent now.
		s.targets = append(s.targets, &lazyTarget{fd: fd, todo: slices.Clone(t.todo)})
	case uffd.EventRemap:
		from, to, n := m.Remap()
		t.cut(to, to+n)
		moved := t.cut(from, from+n)
		for i := range moved {
			moved[i].Addr += to - from
		}
		t.insert(moved)
	case uffd.EventRemove, uffd.EventUnmap:
		// Pages given back read as zeros from now on, as without a
		// userfaultfd.
		t.cut(m.Removed())
	}
}

// fault serves a fault at addr: the pieces of its lazyStep window, or,
// where the image has no page, zero pages up to the next piece.
func (s *lazyServer) fault(t *lazyTarget, addr uint64) {
	ps := s.plan.PageSize
	addr &^= ps - 1
	i, found := slices.BinarySearchFunc(t.todo, addr, func(p lazyPiece, a uint64) int {
		if p.end() <= a {
			return -1
		}
		if p.Addr > a {
			return 1
		}
		return 0
	})
	var err error
	if found {
		err = s.fill(t, addr, addr+lazyStep)
	} else {
		end := addr + lazyStep
		if i < len(t.todo) {
			end = min(end, t.todo[i].Addr)
		}
		var done int64
		done, err = s.zero(t, addr, end-addr, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
			// The window leaves the area: the page alone.
			done, err = s.zero(t, addr, ps, false)
		}
		if errors.Is(err, unix.EEXIST) && done == 0 {
			err = uffd.Wake(t.fd, addr, ps)
		}
	}
	if errors.Is(err, unix.EAGAIN) {
		t.retry = append(t.retry, addr)
	}
}

// fill fills the pieces of t in [a, b); what is left after EAGAIN goes
// back.
func (s *lazyServer) fill(t *lazyTarget, a, b uint64) error {
	pieces := t.cut(a, b)
	for i := range pieces {
		p := &pieces[i]
		var err error
		if p.Level < 0 {
			err = s.fillZero(t, p)
		} else {
			err = s.fillData(t, p)
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			t.insert(pieces[i:])
			return err
		case errors.Is(err, unix.ESRCH):
			// The process exited or exec'd: nothing left to fill.
			unix.Close(t.fd)
			t.fd, t.todo, t.retry = -1, nil, nil
			return err
		default:
			// The range is no longer registered (an event raced us):
			// not ours to fill.
			if s.plan.Verbose {
				s.logf("%#x-%#x: %v", p.Addr, p.end(), err)
			}
		}
	}
	return nil
}

// fillData copies piece p from its chunk, advancing p as it goes.
func (s *lazyServer) fillData(t *lazyTarget, p *lazyPiece) error {
	plain, err := s.chunk(p.Level, p.Chunk)
	if err == nil && (p.Offset > uint64(len(plain)) || p.Len > uint64(len(plain))-p.Offset) {
		err = fmt.Errorf("chunk %d holds %d bytes, not %d+%d", p.Chunk, len(plain), p.Offset, p.Len)
	}
	if err != nil {
		s.badChunk(t, *p, err)
		p.Len = 0
		return nil
	}
	return s.fillWith(t, p, func(addr, n uint64) (int64, error) {
		return uffd.Copy(t.fd, addr, plain[p.Offset:p.Offset+n], 0)
	}, true)
}

// fillZero maps zero pages over piece p, advancing p.
func (s *lazyServer) fillZero(t *lazyTarget, p *lazyPiece) error {
	return s.fillWith(t, p, func(addr, n uint64) (int64, error) {
		return s.zero(t, addr, n, false)
	}, false)
}

// fillWith fills piece p with put (UFFDIO_COPY or UFFDIO_ZEROPAGE of n
// bytes at addr), advancing p by what was filled. A page filled already
// (EEXIST: by a fork's copy of it, or written after a zero page) is
// skipped.
func (s *lazyServer) fillWith(t *lazyTarget, p *lazyPiece, put func(addr, n uint64) (int64, error), count bool) error {
	ps := s.plan.PageSize
	for p.Len > 0 {
		n, err := put(p.Addr, p.Len)
		n = min(max(n, 0), int64(p.Len)) &^ int64(ps-1)
		if count {
			s.copied += uint64(n)
		}
		*p = p.slice(p.Addr+uint64(n), p.end())
		switch {
		case err == nil:
		case errors.Is(err, unix.EEXIST):
			uffd.Wake(t.fd, p.Addr, ps)
			*p = p.slice(p.Addr+ps, p.end())
		default:
			return err
		}
	}
	return nil
}

// zero maps zero pages over [addr, addr+n) and returns how many bytes it
// mapped (possibly some on error). poison marks the range poisoned
// instead (UFFDIO_POISON): a touch raises SIGBUS.
func (s *lazyServer) zero(t *lazyTarget, addr, n uint64, poison bool) (int64, error) {
	if poison {
		return uffd.Poison(t.fd, addr, n)
	}
	done, err := uffd.Zeropage(t.fd, addr, n)
	s.zeroed += uint64(done)
	return done, err
}

// chunk returns the plaintext of a chunk, verified.
func (s *lazyServer) chunk(level, chunk int) ([]byte, error) {
	if s.cached.level == level && s.cached.chunk == chunk {
		return s.plain, nil
	}
	if level < 0 || level >= len(s.images) {
		return nil, fmt.Errorf("no image at chain level %d", level)
	}
	s.cached.level = -1
	plain, err := s.images[level].ReadChunkBuffer(chunk, &s.buf)
	if err != nil {
		return nil, err
	}
	s.cached.level, s.cached.chunk, s.plain = level, chunk, plain
	return plain, nil
}

// badChunk handles a chunk that cannot be read, found filling piece p of
// t: the restored process is killed, and the chunk's pages are poisoned
// wherever they are still missing (in forked children too), so that
// nothing ever reads them as zeros.
func (s *lazyServer) badChunk(t *lazyTarget, p lazyPiece, err error) {
	if !s.bad {
		name := "the image"
		if p.Level < len(s.plan.Images) {
			name = s.plan.Images[p.Level]
		}
		s.logf("cannot fill the pages at %#x-%#x from chunk %d of %s: %v; killing the process rather than let it run with pages it cannot have",
			p.Addr, p.end(), p.Chunk, name, err)
	}
	s.bad = true
	s.killRoot()
	s.poison(t, []lazyPiece{p})
	for _, c := range s.targets {
		var lost []lazyPiece
		c.todo = slices.DeleteFunc(c.todo, func(q lazyPiece) bool {
			if q.Level == p.Level && q.Chunk == p.Chunk {
				lost = append(lost, q)
				return true
			}
			return false
		})
		s.poison(c, lost)
	}
}

// poison marks pieces poisoned in t: touching them raises SIGBUS.
func (s *lazyServer) poison(t *lazyTarget, pieces []lazyPiece) {
	for _, p := range pieces {
		for p.Len > 0 && t.fd >= 0 {
			n, err := s.zero(t, p.Addr, p.Len, true)
			n = min(max(n, 0), int64(p.Len)) &^ int64(s.plan.PageSize-1)
			p = p.slice(p.Addr+uint64(n), p.end())
			if errors.Is(err, unix.EEXIST) {
				p = p.slice(p.Addr+s.plan.PageSize, p.end())
			} else if err != nil {
				break
			}
		}
	}
}

func (s *lazyServer) killRoot() {
	if s.pidfd >= 0 {
		unix.PidfdSendSignal(s.pidfd, unix.SIGKILL, nil, 0)
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
}

// cut removes the parts of t's pieces in [a, b) and returns them.
func (t *lazyTarget) cut(a, b uint64) []lazyPiece {
	var out []lazyPiece
	keep := t.todo[:0:0]
	for _, p := range t.todo {
		if p.end() <= a || p.Addr >= b {
			keep = append(keep, p)
			continue
		}
		if p.Addr < a {
			keep = append(keep, p.slice(p.Addr, a))
		}
		out = append(out, p.slice(max(p.Addr, a), min(p.end(), b)))
		if p.end() > b {
			keep = append(keep, p.slice(b, p.end()))
		}
	}
	t.todo = keep
	return out
}

// insert puts pieces (disjoint from t's) back in order.
func (t *lazyTarget) insert(pieces []lazyPiece) {
	for _, p := range pieces {
		if p.Len > 0 {
			t.todo = append(t.todo, p)
		}
	}
	slices.SortFunc(t.todo, func(a, b lazyPiece) int { return compareAddr(a.Addr, b.Addr) })
}
