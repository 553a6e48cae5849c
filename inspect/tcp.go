package inspect

import (
	"fmt"

	"github.com/ckptimg/ckptimg/format"
)

// TCPJSON is the recorded state of a connected TCP socket.
type TCPJSON struct {
	State string `json:"state"`
	// SendQueueBytes are written and not acknowledged; RecvQueueBytes
	// received and not read.
	SendQueueBytes uint64 `json:"send_queue_bytes"`
	RecvQueueBytes uint64 `json:"recv_queue_bytes"`
	SendSeq        uint32 `json:"send_seq"`
	RecvSeq        uint32 `json:"recv_seq"`
	MSS            uint32 `json:"mss"`
}

// tcpJSON describes t, and the words the files view adds for it.
func tcpJSON(m *format.Meta, t *format.TCPInfo) (*TCPJSON, string) {
	size := func(inline []byte, blob uint32) uint64 {
		if blob != 0 && int(blob) <= len(m.Blobs) {
			return m.Blobs[blob-1].Size
		}
		return uint64(len(inline))
	}
	j := &TCPJSON{State: t.State.String(), SendQueueBytes: size(t.SendQueue, t.SendQueueBlob),
		RecvQueueBytes: size(t.RecvQueue, t.RecvQueueBlob), SendSeq: t.SendSeq, RecvSeq: t.RecvSeq, MSS: t.MSS}
	if t.State != format.TCPEstablished {
		return j, " tcp " + j.State // only an established connection carries queues
	}
	return j, fmt.Sprintf(" tcp %s, %d bytes unacked, %d unread", j.State, j.SendQueueBytes, j.RecvQueueBytes)
}
