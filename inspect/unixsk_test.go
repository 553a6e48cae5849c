package inspect

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// TestUnixSocketDetail: what capture records of a unix socket shows in
// the detail line and the JSON, and nothing for what is not set.
func TestUnixSocketDetail(t *testing.T) {
	m := &format.Meta{Blobs: []format.Blob{{Size: 100000}}}
	for _, tc := range []struct {
		s          format.SocketInfo
		line, json string
	}{
		{format.SocketInfo{Family: 1, Type: 2, State: format.SocketConnected, PeerClosed: true, Queued: []byte("abc"), Messages: []uint32{1, 2}},
			"unix dgram connected peer closed 3 bytes queued in 2 messages", `"peer_closed":true,"queued_bytes":3,"queued_messages":2`},
		{format.SocketInfo{Family: 1, Type: 1, State: format.SocketConnected, PeerIno: 7, Shutdown: 2, QueuedBlob: 1},
			"unix stream connected peer ino 7 shut down wr 100000 bytes queued", `"shutdown":"wr","queued_bytes":100000`},
		{format.SocketInfo{Family: 1, Type: 1, State: format.SocketListening, Local: "@l", Backlog: 8, Pending: 2},
			"unix stream listening local @l backlog 8 2 pending connections", `"pending":2`},
		{format.SocketInfo{Family: 1, Type: 1, State: format.SocketConnected, Peer: "@l", Unaccepted: true},
			"unix stream connected peer @l not accepted yet", `"unaccepted":true`},
		{format.SocketInfo{Family: 1, Type: 1, State: format.SocketConnected, PeerIno: 7},
			"unix stream connected peer ino 7", `"peer_ino":7}`},
	} {
		s := tc.s
		var fi FileInfo
		fillTypeInfo(&fi, &format.File{Type: format.FileUnix, Socket: &s}, m)
		if fi.Detail != tc.line {
			t.Errorf("detail %q, want %q", fi.Detail, tc.line)
		}
		b, err := json.Marshal(fi.Socket)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.json) {
			t.Errorf("JSON %s lacks %s", b, tc.json)
		}
	}
}
