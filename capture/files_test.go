package capture

import (
	"io"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

func blobBytes(t *testing.T, r *format.Reader, index uint32) []byte {
	t.Helper()
	if index == 0 {
		t.Fatalf("no blob")
	}
	br, err := r.OpenBlob(int(index - 1))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCaptureFdzoo(t *testing.T) {
	dir := t.TempDir()
	p := testprog.Start(t, testprog.Build(t, "fdzoo"), dir)
	p.WaitCount(t, 1)
	// A capture that lets it run consumes nothing from the pipe.
	captureToMemory(t, p.PID, Options{}, nil)
	fd, err := unix.Open("/proc/"+strconv.Itoa(p.PID)+"/fd/10", unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	queued, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD
	unix.Close(fd)
	if err != nil || queued != len("hello-pipe") {
		t.Errorf("pipe holds %d bytes after the capture (%v), want 10", queued, err)
	}
	if data, err := peekPipe("/proc/" + strconv.Itoa(p.PID) + "/fd/10"); err != nil || string(data) != "hello-pipe" {
		t.Errorf("pipe after capture: %q %v", data, err)
	}
	r := capturesFrozen(t, p.PID, Options{})
	m := r.Meta()
	pr := &m.Processes[0]
	files := map[int32]*format.File{}
	ids := map[int32]uint32{}
	for _, fd := range pr.FDs {
		files[fd.Num] = &m.Files[fd.FileID-1]
		ids[fd.Num] = fd.FileID
	}
	want := map[int32]format.FileType{10: format.FilePipe, 11: format.FilePipe, 12: format.FileUnix, 13: format.FileInet,
		14: format.FileEventfd, 15: format.FileEpoll, 16: format.FileTimerfd, 17: format.FileSignalfd, 18: format.FileInotify,
		19: format.FileMemfd, 20: format.FileDeleted, 21: format.FileDeleted, 22: format.FileInet, 23: format.FileInet}
	for fd, typ := range want {
		f := files[fd]
		if f == nil || f.Type != typ || f.Unsupported != "" {
			t.Errorf("fd %d: %+v, want type %s", fd, f, typ)
		}
	}
	if t.Failed() {
		return
	}
	if got := files[10].Pipe; got == nil || string(got.Buffered) != "hello-pipe" || got.Ino != files[11].Pipe.Ino {
		t.Errorf("pipe read end: %+v", got)
	}
	if got := files[11].Pipe; len(got.Buffered) != 0 {
		t.Errorf("pipe write end carries the buffer too: %+v", got)
	}
	if s := files[12].Socket; s.State != format.SocketListening || s.Local != filepath.Join(dir, "sock") || s.Type != unix.SOCK_STREAM {
		t.Errorf("unix listener: %+v", s)
	}
	port := p.ReadyFields["tcpport"]
	if s := files[13].Socket; s.State != format.SocketListening || s.Local != "127.0.0.1:"+port {
		t.Errorf("tcp listener: %+v", s)
	}
	if c, a := files[22].Socket, files[23].Socket; c.State != format.SocketConnected || c.Peer != "127.0.0.1:"+port ||
		a.State != format.SocketConnected || a.Peer != c.Local || c.Peer != a.Local {
		t.Errorf("tcp connection: client %+v accepted %+v", c, a)
	}
	if e := files[14].Eventfd; e == nil || e.Count != 7 || files[14].Flags&unix.O_NONBLOCK == 0 {
		t.Errorf("eventfd: %+v flags %o", e, files[14].Flags)
	}
	ep := files[15].Epoll
	if ep == nil || len(ep.Targets) != 2 {
		t.Fatalf("epoll: %+v", ep)
	}
	for _, tg := range ep.Targets {
		switch tg.FD {
		case 10:
			if tg.Events&^(unix.EPOLLERR|unix.EPOLLHUP) != unix.EPOLLIN || tg.Data != 0x1010 || tg.FileID != ids[10] {
				t.Errorf("epoll target 10: %+v", tg)
			}
		case 14:
			if tg.Events&^(unix.EPOLLERR|unix.EPOLLHUP) != unix.EPOLLIN|unix.EPOLLET || tg.Data != 0x1414 || tg.FileID != ids[14] {
				t.Errorf("epoll target 14: %+v", tg)
			}
		default:
			t.Errorf("epoll target %+v", tg)
		}
	}
	if tf := files[16].Timerfd; tf == nil || tf.ClockID != unix.CLOCK_MONOTONIC || tf.IntervalNs != 500e9 || tf.ValueNs <= 900e9 || tf.ValueNs > 1000e9 {
		t.Errorf("timerfd: %+v", tf)
	}
	if sf := files[17].Signalfd; sf == nil || sf.Mask != 1<<(unix.SIGUSR1-1)|1<<(unix.SIGUSR2-1) {
		t.Errorf("signalfd: %+v", sf)
	}
	in := files[18].Inotify
	if in == nil || len(in.Watches) != 1 || in.Watches[0].Mask&(unix.IN_CREATE|unix.IN_DELETE) != unix.IN_CREATE|unix.IN_DELETE {
		t.Fatalf("inotify: %+v", in)
	}
	if in.Watches[0].Path != dir {
		t.Errorf("inotify watch path %q, want %q (dev %d ino %d)", in.Watches[0].Path, dir, in.Watches[0].Dev, in.Watches[0].Ino)
	}
	if got := blobBytes(t, r, files[19].Contents); string(got) != "memfd-content" {
		t.Errorf("memfd contents %q", got)
	}
	if got := blobBytes(t, r, files[20].Contents); string(got) != "deleted-content" || files[20].Pos != 15 {
		t.Errorf("deleted file contents %q pos %d", got, files[20].Pos)
	}
	if ids[20] != ids[21] {
		t.Errorf("dup'd fds 20 and 21 have file ids %d and %d", ids[20], ids[21])
	}
}
