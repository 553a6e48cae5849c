package restorer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
)

// This file recreates the anonymous-inode files that carry kernel state
// of their own: timerfds and inotify instances. They are made in the
// restorer and handed to the process like any other file.

// tfdIocSetTicks is TFD_IOC_SET_TICKS, _IOW('T', 0, __u64): adds expirations
// to a timerfd (CONFIG_CHECKPOINT_RESTORE).
const tfdIocSetTicks = 0x40085400

// openTimerfd makes a timerfd with the recorded clock, settings and unread
// expirations. The recorded value is the time that was left at capture
// (created is the capture time): a relative timer gets it again from now,
// as if the program had been paused; an absolute CLOCK_REALTIME timer keeps
// its wall-clock deadline, so one that passed while the program was down
// fires at once.
func openTimerfd(fp *FilePlan, created int64) (int, error) {
	t := fp.File.Timerfd
	flags := unix.TFD_CLOEXEC
	if fp.Flags&unix.O_NONBLOCK != 0 {
		flags |= unix.TFD_NONBLOCK
	}
	fd, err := unix.TimerfdCreate(int(t.ClockID), flags)
	if err != nil {
		return -1, os.NewSyscallError(fmt.Sprintf("timerfd_create(clock %d)", t.ClockID), err)
	}
	fail := func(err error) (int, error) {
		unix.Close(fd)
		return -1, err
	}
	value := t.ValueNs
	if value <= 0 && t.IntervalNs > 0 {
		// A periodic timer that expired and was not read yet shows no
		// time left (the kernel moves it on at the next read): its
		// expiration is in Ticks, the next one a period away.
		value = t.IntervalNs
	}
	if value > 0 {
		spec := unix.ItimerSpec{Interval: unix.NsecToTimespec(t.IntervalNs), Value: unix.NsecToTimespec(value)}
		setFlags := 0
		if t.Flags&unix.TFD_TIMER_ABSTIME != 0 && (t.ClockID == unix.CLOCK_REALTIME || t.ClockID == unix.CLOCK_REALTIME_ALARM) && created > 0 {
			spec.Value = unix.NsecToTimespec(created + value)
			setFlags = int(t.Flags) & (unix.TFD_TIMER_ABSTIME | unix.TFD_TIMER_CANCEL_ON_SET)
		}
		if err := unix.TimerfdSettime(fd, setFlags, &spec, nil); err != nil {
			return fail(os.NewSyscallError("timerfd_settime", err))
		}
	}
	if t.Ticks > 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], t.Ticks)
		if err := ioctlPtr(fd, tfdIocSetTicks, b[:]); err != nil {
			return fail(fmt.Errorf("giving back %d unread expirations: %w", t.Ticks, os.NewSyscallError("ioctl(TFD_IOC_SET_TICKS)", err)))
		}
	}
	return fd, nil
}

// openInotify makes an inotify instance with the recorded watches at their
// recorded numbers. The kernel hands out watch numbers in increasing order
// and does not reuse a removed one until it wraps around, so a gap left by
// a removed watch is rebuilt by adding and removing a watch on a scratch
// directory; the IN_IGNORED events that leaves are read away before the
// program gets the instance.
func (fs *fileSet) openInotify(fp *FilePlan) error {
	f := fp.File
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	fs.keep(fp, fd)
	watches := append([]format.InotifyWatch(nil), f.Inotify.Watches...)
	sort.Slice(watches, func(i, j int) bool { return watches[i].WD < watches[j].WD })
	var filler string
	defer func() {
		if filler != "" {
			os.Remove(filler)
		}
	}()
	real := map[int32]bool{}
	next := int32(1)
	for _, w := range watches {
		for ; next < w.WD; next++ {
			if filler == "" {
				if filler, err = os.MkdirTemp("", "ckpt-restart-inotify-"); err != nil {
					return fmt.Errorf("watch %d: a scratch directory for the numbers before it: %w", w.WD, err)
				}
			}
			n, err := unix.InotifyAddWatch(fd, filler, unix.IN_ATTRIB)
			if err != nil {
				return fmt.Errorf("watch %d: %w", next, os.NewSyscallError("inotify_add_watch", err))
			}
			if _, err := unix.InotifyRmWatch(fd, uint32(n)); err != nil {
				return fmt.Errorf("watch %d: %w", next, os.NewSyscallError("inotify_rm_watch", err))
			}
			if int32(n) > next {
				next = int32(n)
			}
		}
		mask := w.Mask &^ (unix.IN_MASK_ADD | unix.IN_MASK_CREATE)
		if noFollow(w) {
			mask |= unix.IN_DONT_FOLLOW
		}
		n, err := unix.InotifyAddWatch(fd, w.Path, mask)
		if err != nil {
			return fmt.Errorf("watch %d on %s: %w", w.WD, w.Path, os.NewSyscallError("inotify_add_watch", err))
		}
		if int32(n) != w.WD {
			return fmt.Errorf("%w: watch %d on %s came back as watch %d (two watched paths are the same file now, or a number was skipped)", ErrUnsupported, w.WD, w.Path, n)
		}
		real[w.WD] = true
		next = w.WD + 1
	}
	if filler != "" {
		dropped := drainInotify(fd, real)
		if dropped > 0 {
			fs.warnings = append(fs.warnings, fmt.Sprintf("%s: %d event(s) on its watches during the restore were dropped with the ones the rebuilding left", fileSubject(f), dropped))
		}
	}
	setFL(fd, fp.Flags)
	return nil
}

// noFollow reports whether a watch was on a symbolic link itself
// (IN_DONT_FOLLOW): its recorded inode is the link's, not its target's.
func noFollow(w format.InotifyWatch) bool {
	if w.Ino == 0 {
		return false
	}
	var lst, st unix.Stat_t
	if unix.Lstat(w.Path, &lst) != nil || lst.Mode&unix.S_IFMT != unix.S_IFLNK {
		return false
	}
	return lst.Ino == w.Ino && (unix.Stat(w.Path, &st) != nil || st.Ino != w.Ino)
}

// drainInotify reads every queued event of a non-blocking inotify fd and
// returns how many were for the watches in real.
func drainInotify(fd int, real map[int32]bool) int {
	dropped := 0
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			return dropped
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.LittleEndian.Uint32(buf[off:]))
			l := int(binary.LittleEndian.Uint32(buf[off+12:]))
			if real[wd] {
				dropped++
			}
			off += unix.SizeofInotifyEvent + l
		}
	}
	return dropped
}
