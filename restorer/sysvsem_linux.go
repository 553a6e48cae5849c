package restorer

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/internal/sysvipc"
)

// This file recreates the System V semaphore sets and message queues of
// an image in ckpt-restart, before the processes: each with its key, its
// id where free (sem_next_id, msg_next_id), owner and mode; a set with
// its values, a queue with its messages in order and its byte limit.
// Nothing ties them to the processes, so nothing is injected.

// semMsgSet is the sets and queues a restore created.
type semMsgSet struct {
	sems, msgs []int
}

// withNextID runs create with /proc/sys/kernel/NAME_next_id set to want
// when that id is free (free reports it), so that the object gets it.
func withNextID(name string, want int, free bool, create func() (int, error)) (int, error) {
	file := "/proc/sys/kernel/" + name + "_next_id"
	chose := free && os.WriteFile(file, []byte(strconv.Itoa(want)), 0) == nil
	id, err := create()
	if chose && err != nil {
		os.WriteFile(file, []byte("-1"), 0)
	}
	return id, err
}

func createSemMsg(pl *Plan) (set *semMsgSet, warnings []string, err error) {
	set = &semMsgSet{}
	if pl.Meta.IPC == nil {
		return set, nil, nil
	}
	defer func() {
		if err != nil {
			set.remove()
		}
	}()
	ids := func(table, col string) map[int32]bool {
		taken := map[int32]bool{}
		rows, _ := sysvipc.ReadTable(table)
		for _, r := range rows {
			taken[int32(r[col])] = true
		}
		return taken
	}
	semIDs, msgIDs := ids("sem", "semid"), ids("msg", "msqid")
	taken := func(subject string, key int32) error {
		return fmt.Errorf("%s: %w: an object with key %#08x was created since the checks; restore in a fresh IPC namespace (unshare --ipc)", subject, ErrIPCKeyTaken, uint32(key))
	}
	for _, s := range pl.Meta.IPC.Sem {
		subj := semSubject(s.Perm)
		if len(s.Values) == 0 || len(s.Values) > 1<<16 {
			return set, warnings, fmt.Errorf("%s: %d semaphores", subj, len(s.Values))
		}
		id, err := withNextID("sem", int(s.Perm.ID), !semIDs[s.Perm.ID], func() (int, error) {
			r, _, e := unix.Syscall(unix.SYS_SEMGET, uintptr(s.Perm.Key), uintptr(len(s.Values)), uintptr(unix.IPC_CREAT|unix.IPC_EXCL|int(s.Perm.Mode&0o777)))
			if e != 0 {
				return -1, e
			}
			return int(r), nil
		})
		if errors.Is(err, unix.EEXIST) {
			return set, warnings, taken(subj, s.Perm.Key)
		}
		if err != nil {
			return set, warnings, fmt.Errorf("%s: %w", subj, os.NewSyscallError("semget", err))
		}
		set.sems = append(set.sems, id)
		if id != int(s.Perm.ID) {
			warnings = append(warnings, fmt.Sprintf("%s is id %d now: its id is in use here", subj, id))
		}
		if err := sysvipc.SetSemValues(id, s.Values); err != nil {
			return set, warnings, fmt.Errorf("%s: %w", subj, err)
		}
		if err := sysvipc.SetSemPerm(id, sysvipc.Perm{UID: s.Perm.UID, GID: s.Perm.GID, Mode: s.Perm.Mode & 0o777}); err != nil {
			return set, warnings, fmt.Errorf("%s: %w", subj, err)
		}
	}
	for _, q := range pl.Meta.IPC.Msg {
		subj := msgSubject(q.Perm)
		id, err := withNextID("msg", int(q.Perm.ID), !msgIDs[q.Perm.ID], func() (int, error) {
			r, _, e := unix.Syscall(unix.SYS_MSGGET, uintptr(q.Perm.Key), uintptr(unix.IPC_CREAT|unix.IPC_EXCL|int(q.Perm.Mode&0o777)), 0)
			if e != 0 {
				return -1, e
			}
			return int(r), nil
		})
		if errors.Is(err, unix.EEXIST) {
			return set, warnings, taken(subj, q.Perm.Key)
		}
		if err != nil {
			return set, warnings, fmt.Errorf("%s: %w", subj, os.NewSyscallError("msgget", err))
		}
		set.msgs = append(set.msgs, id)
		if id != int(q.Perm.ID) {
			warnings = append(warnings, fmt.Sprintf("%s is id %d now: its id is in use here", subj, id))
		}
		// The limit first (as root), so that every message fits again.
		if err := sysvipc.SetMsgPerm(id, sysvipc.Perm{UID: 0, GID: 0, Mode: q.Perm.Mode & 0o777}, q.QBytes); err != nil {
			return set, warnings, fmt.Errorf("%s: %w", subj, err)
		}
		for i, m := range q.Messages {
			if err := sysvipc.Send(id, sysvipc.Message{Type: m.Type, Data: m.Data}); err != nil {
				return set, warnings, fmt.Errorf("%s: message %d of %d (type %d, %d bytes): %w", subj, i+1, len(q.Messages), m.Type, len(m.Data), err)
			}
		}
		if err := sysvipc.SetMsgPerm(id, sysvipc.Perm{UID: q.Perm.UID, GID: q.Perm.GID, Mode: q.Perm.Mode & 0o777}, q.QBytes); err != nil {
			return set, warnings, fmt.Errorf("%s: %w", subj, err)
		}
	}
	return set, warnings, nil
}

// remove removes what a failed restore created.
func (s *semMsgSet) remove() {
	if s == nil {
		return
	}
	for _, id := range s.sems {
		sysvipc.Remove("sem", id)
	}
	for _, id := range s.msgs {
		sysvipc.Remove("msg", id)
	}
}
