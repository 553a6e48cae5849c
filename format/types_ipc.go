package format

import "fmt"

// This file holds the records of memory shared between processes
// (Meta.IPC): the System V shared memory segments attached in the
// captured tree, and the shared anonymous memory objects (MAP_SHARED |
// MAP_ANONYMOUS, inherited across fork), each with its contents stored
// once as a blob however many processes map it.

// IPCInfo lists the System V IPC objects the image recreates.
type IPCInfo struct {
	// Shm are the shared memory segments attached by processes of the
	// tree; an Area's Shm field points here.
	Shm []ShmSegment `ckpt:"1"`
	// Shmem are the shared anonymous memory objects of the tree; an
	// Area's Shmem field points here.
	Shmem []ShmemObject `ckpt:"2"`
	// Sem and Msg are the System V semaphore sets and message queues a
	// process of the tree was the last to use (capture.md says why).
	Sem []SemSet   `ckpt:"3"`
	Msg []MsgQueue `ckpt:"4"`
}

// SemSet is one System V semaphore set.
type SemSet struct {
	Perm IPCPerm `ckpt:"1"`
	// Values are the semaphores' values (semctl GETALL), one per
	// semaphore of the set; PIDs the pid of the last operation on each
	// (GETPID).
	Values []uint32 `ckpt:"2"`
	PIDs   []int32  `ckpt:"3"`
}

// MsgQueue is one System V message queue with the messages it held.
type MsgQueue struct {
	Perm IPCPerm `ckpt:"1"`
	// QBytes is the queue's byte limit (msg_qbytes).
	QBytes uint64 `ckpt:"2"`
	// Messages in queue order.
	Messages []IPCMessage `ckpt:"3"`
}

// IPCMessage is one message of a queue.
type IPCMessage struct {
	Type int64  `ckpt:"1"` // mtype, positive
	Data []byte `ckpt:"2"` // mtext
}

// IPCPerm is the kernel's struct ipc_perm of one object.
type IPCPerm struct {
	// Key is the key it was created with; 0 (IPC_PRIVATE) for a private
	// object and for one marked for removal (the kernel clears its key).
	Key  int32  `ckpt:"1"`
	ID   int32  `ckpt:"2"` // the id at capture (shmid)
	Mode uint32 `ckpt:"3"` // permission bits (the low 9 bits of ipc_perm.mode)
	UID  uint32 `ckpt:"4"` // owner
	GID  uint32 `ckpt:"5"` // owner's group
	CUID uint32 `ckpt:"6"` // creator
	CGID uint32 `ckpt:"7"` // creator's group
}

// ShmSegment is one System V shared memory segment.
type ShmSegment struct {
	Perm IPCPerm `ckpt:"1"`
	Size uint64  `ckpt:"2"` // shm_segsz in bytes, as given to shmget
	// Removed: the segment was marked for removal (IPC_RMID, SHM_DEST):
	// it goes away at the last detach.
	Removed bool `ckpt:"3"`
	// Contents is the index+1 in Meta.Blobs of the segment's bytes
	// (Size of them), stored once for every process that attaches it.
	Contents uint32 `ckpt:"4"`
	// Attaches is how many attachments (shm_nattch) the segment had;
	// Outside how many of them were not in the tree (a restore cannot
	// give those back).
	Attaches uint32 `ckpt:"5"`
	Outside  uint32 `ckpt:"6"`
	CPID     int32  `ckpt:"7"` // creator pid (shm_cpid)
}

// ShmemObject is one shared memory object without a name: the kernel's
// unnamed shmem file of shared anonymous memory ("/dev/zero (deleted)" in
// maps), or a deleted file or memfd mapped shared that no fd holds open.
// Every area that maps it, in any process, shares its pages.
type ShmemObject struct {
	Ino  uint64 `ckpt:"1"` // its inode at capture, for information
	Size uint64 `ckpt:"2"` // its size in bytes
	// Contents is the index+1 in Meta.Blobs of its bytes (Size of them).
	Contents uint32 `ckpt:"3"`
}

// validateIPC checks the IPC table's references to blobs.
func validateIPC(m *Meta, bad func(path, format string, args ...any) error) error {
	if m.IPC == nil {
		return nil
	}
	for i, s := range m.IPC.Shm {
		if s.Contents > uint32(len(m.Blobs)) {
			return bad(fmt.Sprintf("ipc.shm[%d]", i), "contents blob %d of %d", s.Contents, len(m.Blobs))
		}
		if s.Contents != 0 && m.Blobs[s.Contents-1].Size != s.Size {
			return bad(fmt.Sprintf("ipc.shm[%d]", i), "contents blob of %d bytes for a segment of %d", m.Blobs[s.Contents-1].Size, s.Size)
		}
	}
	for i, s := range m.IPC.Shmem {
		if s.Contents == 0 || s.Contents > uint32(len(m.Blobs)) || m.Blobs[s.Contents-1].Size != s.Size {
			return bad(fmt.Sprintf("ipc.shmem[%d]", i), "contents blob %d of %d is missing or not %d bytes", s.Contents, len(m.Blobs), s.Size)
		}
	}
	return nil
}
