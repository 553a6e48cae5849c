package capture

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/sysvipc"
)

// This file records the System V semaphore sets and message queues of the
// tree. No fd or area ties them to a process, so capture takes those a
// process of the tree was the last to use: a semaphore whose last
// operation (sempid) was the tree's, a queue whose last send or receive
// (lspid, lrpid) was. An object the program created but never used is
// missed, one that another program used last too; docs/capture.md says
// so. Like the shm segments, they are read in the tree's IPC namespace.

// collectSemMsg records the sets and queues the tree used last.
func (c *capturer) collectSemMsg() error {
	pids := map[int64]bool{}
	for _, pr := range c.procs {
		if pr.tr != nil {
			pids[int64(pr.pid)] = true
		}
	}
	if len(pids) == 0 {
		return nil
	}
	return inIPCNamespace(c.procs[0].pid, func() error { return c.collectSemMsgHere(pids) })
}

func (c *capturer) collectSemMsgHere(pids map[int64]bool) error {
	sems, err := sysvipc.ReadTable("sem")
	if err != nil {
		return wrap("list semaphore sets", c.procs[0].pid, 0, -1, err)
	}
	for _, row := range sems {
		id := int(row["semid"])
		vals, spids, err := sysvipc.SemValues(id, int(row["nsems"]))
		if errors.Is(err, unix.EACCES) {
			// Another user's set, which the tree (run as this user)
			// cannot read either, and so hardly uses; its sempids cannot
			// be read to tell.
			c.notice("semaphore set %d (key %#x, owner uid %d) cannot be read as this user: not captured, if the program uses it", id, row["key"], row["uid"])
			continue
		}
		if err != nil {
			return wrap(fmt.Sprintf("read semaphore set %d", id), c.procs[0].pid, 0, -1, err)
		}
		used := false
		for _, p := range spids {
			used = used || pids[int64(p)]
		}
		if used {
			c.ipc().Sem = append(c.ipc().Sem, format.SemSet{Perm: ipcPerm(row, "semid"), Values: vals, PIDs: spids})
		}
	}
	msgs, err := sysvipc.ReadTable("msg")
	if err != nil {
		return wrap("list message queues", c.procs[0].pid, 0, -1, err)
	}
	max := 8192
	if b, err := os.ReadFile("/proc/sys/kernel/msgmax"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			max = n
		}
	}
	for _, row := range msgs {
		if !pids[row["lspid"]] && !pids[row["lrpid"]] {
			continue
		}
		id := int(row["msqid"])
		q := format.MsgQueue{Perm: ipcPerm(row, "msqid")}
		if q.QBytes, err = sysvipc.MsgQBytes(id); err != nil {
			return wrap(fmt.Sprintf("read message queue %d", id), c.procs[0].pid, 0, -1, err)
		}
		ms, err := sysvipc.CopyMessages(id, int(row["qnum"]), max)
		if err != nil {
			return wrap(fmt.Sprintf("read message queue %d", id), c.procs[0].pid, 0, -1, err)
		}
		for _, m := range ms {
			q.Messages = append(q.Messages, format.IPCMessage{Type: m.Type, Data: m.Data})
		}
		c.ipc().Msg = append(c.ipc().Msg, q)
	}
	return nil
}

func (c *capturer) ipc() *format.IPCInfo {
	if c.meta.IPC == nil {
		c.meta.IPC = &format.IPCInfo{}
	}
	return c.meta.IPC
}

func ipcPerm(row sysvipc.Row, idCol string) format.IPCPerm {
	return format.IPCPerm{Key: int32(row["key"]), ID: int32(row[idCol]), Mode: uint32(row["perms"]) & shmPermOK,
		UID: uint32(row["uid"]), GID: uint32(row["gid"]), CUID: uint32(row["cuid"]), CGID: uint32(row["cgid"])}
}

// removeSemMsg runs for capture --kill, as removeShm does: the sets and
// queues the image recorded are removed so that their keys are free for
// the restore. One replaced meanwhile (another key under its id) is left.
func (c *capturer) removeSemMsg() error {
	if c.meta.IPC == nil || len(c.meta.IPC.Sem)+len(c.meta.IPC.Msg) == 0 {
		return nil
	}
	return inIPCNamespace(c.procs[0].pid, c.removeSemMsgHere)
}

func (c *capturer) removeSemMsgHere() error {
	var errs []string
	remove := func(kind, table, idCol string, perm format.IPCPerm) {
		rows, _ := sysvipc.ReadTable(table)
		for _, r := range rows {
			if int32(r[idCol]) == perm.ID && int32(r["key"]) == perm.Key {
				if err := sysvipc.Remove(kind, int(perm.ID)); err != nil {
					errs = append(errs, fmt.Sprintf("%s id %d: %v", kind, perm.ID, err))
				}
			}
		}
	}
	for _, s := range c.meta.IPC.Sem {
		remove("sem", "sem", "semid", s.Perm)
	}
	for _, q := range c.meta.IPC.Msg {
		remove("msg", "msg", "msqid", q.Perm)
	}
	if len(errs) > 0 {
		return &Error{Op: "remove semaphore sets and message queues of the killed tree", FD: -1, Err: fmt.Errorf("%s", strings.Join(errs, "; "))}
	}
	return nil
}
