// Package sysvipc reads and writes System V semaphore sets and message
// queues for capture and the restorer: the semctl, msgctl and msgrcv calls
// x/sys/unix does not wrap, and the kernel's tables in /proc/sysvipc.
package sysvipc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Commands and flags (linux/ipc.h, linux/sem.h, linux/msg.h).
const (
	getPID     = 11
	getAll     = 13
	setAll     = 17
	ipcNowait  = 0o4000
	msgNoerror = 0o10000
	msgCopy    = 0o40000
)

// Row is one line of a /proc/sysvipc table, by column name.
type Row map[string]int64

// ReadTable parses /proc/sysvipc/NAME ("sem", "msg", "shm"): every column
// is a number, "perms" in octal.
func ReadTable(name string) ([]Row, error) {
	data, err := os.ReadFile("/proc/sysvipc/" + name)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() {
		return nil, nil
	}
	cols := strings.Fields(sc.Text())
	var rows []Row
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < len(cols) {
			continue
		}
		r := Row{}
		for i, c := range cols {
			base := 10
			if c == "perms" {
				base = 8
			}
			v, err := strconv.ParseInt(f[i], base, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/sysvipc/%s: column %s of %q: %v", name, c, sc.Text(), err)
			}
			r[c] = v
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Perm is the settable part of struct ipc64_perm.
type Perm struct {
	UID, GID, Mode uint32
}

// msqid64_ds on 64-bit Linux: ipc64_perm (48 bytes), three times, cbytes,
// qnum, qbytes, lspid, lrpid, two unused longs.
const (
	msqidSize    = 120
	msqidQBytes  = 48 + 5*8
	permUID      = 4
	permGID      = 8
	permMode     = 20
	semidSize    = 104 // semid64_ds: perm, otime, unused, ctime, unused, nsems, two unused
	ipcSet       = 1
	ipcStat      = 2
	ipcRmid      = 0
	maxMsgBuffer = 1 << 20
)

func putPerm(b []byte, p Perm) {
	binary.LittleEndian.PutUint32(b[permUID:], p.UID)
	binary.LittleEndian.PutUint32(b[permGID:], p.GID)
	binary.LittleEndian.PutUint32(b[permMode:], p.Mode)
}

// SemValues returns the values and last-operation pids of a set's n
// semaphores.
func SemValues(id, n int) ([]uint32, []int32, error) {
	vals := make([]uint16, n)
	if err := semctlBuf(id, 0, getAll, vals); err != nil {
		return nil, nil, os.NewSyscallError("semctl(GETALL)", err)
	}
	out := make([]uint32, n)
	pids := make([]int32, n)
	for i := range vals {
		out[i] = uint32(vals[i])
		pid, err := semctlInt(id, i, getPID)
		if err != nil {
			return nil, nil, os.NewSyscallError("semctl(GETPID)", err)
		}
		pids[i] = int32(pid)
	}
	return out, pids, nil
}

// SetSemValues sets every semaphore of a set.
func SetSemValues(id int, vals []uint32) error {
	v := make([]uint16, len(vals))
	for i, x := range vals {
		if x > 0xffff {
			return fmt.Errorf("semaphore %d: value %d is out of range", i, x)
		}
		v[i] = uint16(x)
	}
	return os.NewSyscallError("semctl(SETALL)", semctlBuf(id, 0, setAll, v))
}

// SetSemPerm gives a set its owner and mode.
func SetSemPerm(id int, p Perm) error {
	b := make([]byte, semidSize)
	putPerm(b, p)
	return os.NewSyscallError("semctl(IPC_SET)", semctlBytes(id, ipcSet, b))
}

// MsgQBytes returns a queue's byte limit.
func MsgQBytes(id int) (uint64, error) {
	b := make([]byte, msqidSize)
	if err := msgctl(id, ipcStat, b); err != nil {
		return 0, os.NewSyscallError("msgctl(IPC_STAT)", err)
	}
	return binary.LittleEndian.Uint64(b[msqidQBytes:]), nil
}

// SetMsgPerm gives a queue its owner, mode and byte limit.
func SetMsgPerm(id int, p Perm, qbytes uint64) error {
	b := make([]byte, msqidSize)
	putPerm(b, p)
	binary.LittleEndian.PutUint64(b[msqidQBytes:], qbytes)
	return os.NewSyscallError("msgctl(IPC_SET)", msgctl(id, ipcSet, b))
}

// Message is one message of a queue.
type Message struct {
	Type int64
	Data []byte
}

// CopyMessages reads the n messages of a queue without taking them
// (msgrcv with MSG_COPY, which needs CONFIG_CHECKPOINT_RESTORE).
func CopyMessages(id, n, max int) ([]Message, error) {
	if max <= 0 || max > maxMsgBuffer {
		max = maxMsgBuffer
	}
	buf := make([]byte, 8+max)
	var out []Message
	for i := 0; i < n; i++ {
		got, err := msgrcv(id, buf, max, i, ipcNowait|msgCopy|msgNoerror)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w (MSG_COPY needs a kernel with CONFIG_CHECKPOINT_RESTORE)", i, os.NewSyscallError("msgrcv(MSG_COPY)", err))
		}
		out = append(out, Message{Type: int64(binary.LittleEndian.Uint64(buf)), Data: bytes.Clone(buf[8 : 8+got])})
	}
	return out, nil
}

// Send puts one message on a queue without waiting.
func Send(id int, m Message) error {
	buf := make([]byte, 8+len(m.Data))
	binary.LittleEndian.PutUint64(buf, uint64(m.Type))
	copy(buf[8:], m.Data)
	return os.NewSyscallError("msgsnd", msgsnd(id, buf, len(m.Data), ipcNowait))
}

// Remove removes a set ("sem") or a queue ("msg").
func Remove(kind string, id int) error {
	if kind == "sem" {
		return os.NewSyscallError("semctl(IPC_RMID)", semctlBytes(id, ipcRmid, nil))
	}
	return os.NewSyscallError("msgctl(IPC_RMID)", msgctl(id, ipcRmid, nil))
}
