package inspect

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// IPCInfo is one object of memory shared between processes (Meta.IPC): a
// System V shared memory segment ("shm") or a shared anonymous memory
// object ("shmem"), with the areas that map it.
type IPCInfo struct {
	// Kind is "shm" or "shmem".
	Kind string `json:"kind"`
	// ID is the segment's shm id at capture ("shm"), or the object's
	// index in the image ("shmem").
	ID int64 `json:"id"`
	// Key is the System V key, "0x0" for a private segment or one
	// marked for removal.
	Key  Hex    `json:"key"`
	Size uint64 `json:"size"`
	// Mode is the permission bits in octal ("shm" only).
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
