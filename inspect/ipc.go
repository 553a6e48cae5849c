package inspect

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// IPCInfo is one object shared between processes (Meta.IPC): a System V
// shared memory segment ("shm"), a shared anonymous memory object
// ("shmem") with the areas that map it, a System V semaphore set ("sem")
// or message queue ("msg").
type IPCInfo struct {
	// Kind is "shm", "shmem", "sem" or "msg".
	Kind string `json:"kind"`
	// ID is the segment's shm id at capture ("shm"), or the object's
	// index in the image ("shmem").
	ID int64 `json:"id"`
	// Key is the System V key, "0x0" for a private segment or one
	// marked for removal.
	Key Hex `json:"key"`
	// Size is the bytes of a segment or object, the number of semaphores
	// of a set, the bytes of the messages of a queue.
	Size uint64 `json:"size"`
	// Values are a semaphore set's values; Messages the number of a
	// queue's messages, Types their types in queue order.
	Values   []uint32 `json:"values,omitempty"`
	Messages int      `json:"messages,omitempty"`
	Types    []int64  `json:"types,omitempty"`
	// Mode is the permission bits in octal ("shm", "sem", "msg").
	Mode string `json:"mode,omitempty"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	// Removed: marked for removal (IPC_RMID) at capture.
	Removed bool `json:"removed,omitempty"`
	// Attaches is the number of attachments at capture, Outside those of
	// processes outside the image ("shm" only).
	Attaches uint32 `json:"attaches,omitempty"`
	Outside  uint32 `json:"outside,omitempty"`
	// ContentsBlob is the index of the blob of its contents, -1 if none.
	ContentsBlob int `json:"contents_blob"`
	// Users are the areas that map it.
	Users []IPCUser `json:"users"`
}

// IPCUser is one area mapping an IPC object.
type IPCUser struct {
	PID   int32 `json:"pid"`
	Start Hex   `json:"start"`
	End   Hex   `json:"end"`
	// Offset is the area's offset in the object.
	Offset uint64 `json:"offset"`
}

// IPC lists the image's shared memory objects: System V segments first,
// then shared anonymous objects, each in image order.
func IPC(r *format.Reader) []IPCInfo {
	out := []IPCInfo{}
	m := r.Meta()
	if m.IPC == nil {
		return out
	}
	for _, s := range m.IPC.Shm {
		out = append(out, IPCInfo{Kind: "shm", ID: int64(s.Perm.ID), Key: Hex(uint32(s.Perm.Key)), Size: s.Size,
			Mode: fmt.Sprintf("%#o", s.Perm.Mode), UID: s.Perm.UID, GID: s.Perm.GID, Removed: s.Removed,
			Attaches: s.Attaches, Outside: s.Outside, ContentsBlob: int(s.Contents) - 1, Users: []IPCUser{}})
	}
	nShm := len(out)
	for i, s := range m.IPC.Shmem {
		out = append(out, IPCInfo{Kind: "shmem", ID: int64(i), Size: s.Size, ContentsBlob: int(s.Contents) - 1, Users: []IPCUser{}})
	}
	for _, s := range m.IPC.Sem {
		out = append(out, IPCInfo{Kind: "sem", ID: int64(s.Perm.ID), Key: Hex(uint32(s.Perm.Key)), Size: uint64(len(s.Values)),
			Values: s.Values, Mode: fmt.Sprintf("%#o", s.Perm.Mode), UID: s.Perm.UID, GID: s.Perm.GID, ContentsBlob: -1, Users: []IPCUser{}})
	}
	for _, q := range m.IPC.Msg {
		o := IPCInfo{Kind: "msg", ID: int64(q.Perm.ID), Key: Hex(uint32(q.Perm.Key)), Messages: len(q.Messages),
			Mode: fmt.Sprintf("%#o", q.Perm.Mode), UID: q.Perm.UID, GID: q.Perm.GID, ContentsBlob: -1, Users: []IPCUser{}}
		for _, msg := range q.Messages {
			o.Size += uint64(len(msg.Data))
			o.Types = append(o.Types, msg.Type)
		}
		out = append(out, o)
	}
	for _, p := range m.Processes {
		for _, a := range p.Areas {
			i := -1
			switch {
			case a.Shm != 0 && int(a.Shm) <= len(m.IPC.Shm):
				i = int(a.Shm) - 1
			case a.Shmem != 0 && int(a.Shmem) <= len(m.IPC.Shmem):
				i = nShm + int(a.Shmem) - 1
			}
			if i >= 0 {
				out[i].Users = append(out[i].Users, IPCUser{PID: p.PID, Start: Hex(a.Start), End: Hex(a.End), Offset: a.Offset})
			}
		}
	}
	return out
}
