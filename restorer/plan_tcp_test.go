package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// tcpMeta is testMeta with two TCP connections at fds 8 and 9: f8 an
// established one whose peer (f9, the other end) is in the image, f9
// in the given state.
func tcpMeta(state format.TCPState) *format.Meta {
	m := testMeta()
	m.Processes[0].FDs = append(m.Processes[0].FDs, format.FD{Num: 8, FileID: 8}, format.FD{Num: 9, FileID: 9})
	sock := func(local, peer string, t *format.TCPInfo) *format.SocketInfo {
		return &format.SocketInfo{Family: 2, Type: 1, Protocol: 6, State: format.SocketConnected, Local: local, Peer: peer, TCP: t}
	}
	m.Files = append(m.Files,
		format.File{ID: 8, Type: format.FileInet, Name: "socket:[80]", Flags: 2, Socket: sock("127.0.0.1:80", "127.0.0.1:5000",
			&format.TCPInfo{State: format.TCPEstablished, SendQueue: []byte("abc"), Window: []uint32{1, 2, 3, 4, 5}})},
		format.File{ID: 9, Type: format.FileInet, Name: "socket:[81]", Flags: 2, Socket: sock("127.0.0.1:5000", "127.0.0.1:80",
			&format.TCPInfo{State: state})})
	return m
}

func TestPlanTCP(t *testing.T) {
	_, pl := testSession(t, tcpMeta(format.TCPEstablished), Options{})
	if fp := pl.fileByID[8]; fp.Source != SrcTCP || !strings.Contains(fp.Note, "3 bytes unacknowledged") || !strings.Contains(fp.Note, "its peer in the image (f9)") {
		t.Errorf("f8 planned as %v (%s), want rebuilt with its peer f9", fp.Source, fp.Note)
	}

	_, pl = testSession(t, tcpMeta(format.TCPCloseWait), Options{})
	found := false
	for _, p := range pl.Problems {
		found = found || p.Unsupported && strings.Contains(p.Subject, "f9") && strings.Contains(p.What, "in state CLOSE_WAIT") && strings.Contains(p.Remedy, "--tcp-close")
	}
	if !found {
		t.Errorf("CLOSE_WAIT not refused by name with --tcp-close as remedy: %v", pl.Problems)
	}

	_, pl = testSession(t, tcpMeta(format.TCPCloseWait), Options{TCPClose: true})
	for _, id := range []uint32{8, 9} {
		if fp := pl.fileByID[id]; fp.Source != SrcTCPClosed {
			t.Errorf("f%d with --tcp-close planned as %v", id, fp.Source)
		}
	}
	if len(pl.Warnings) != 2 {
		t.Errorf("--tcp-close warnings %q, want one per connection", pl.Warnings)
	}

	// Hostile images (a blob index out of range is refused when the
	// metadata is read, format/validate.go).
	for _, tc := range []struct {
		name string
		edit func(*format.TCPInfo)
		want string
	}{
		{"window", func(t *format.TCPInfo) { t.Window = []uint32{1} }, "repair window of 1 numbers"},
		{"queue", func(t *format.TCPInfo) { t.RecvQueue = make([]byte, maxTCPQueue+1) }, "a queue of"},
	} {
		m := tcpMeta(format.TCPEstablished)
		tc.edit(m.Files[7].Socket.TCP)
		_, pl := testSession(t, m, Options{})
		found := false
		for _, p := range pl.Problems {
			found = found || strings.Contains(p.What, tc.want)
		}
		if !found {
			t.Errorf("%s: not refused (%v)", tc.name, pl.Problems)
		}
	}
}

// TestPlanTCPOutsidePeer: a connection whose peer is not in the image is
// rebuilt, with a warning that the peer must still hold it.
func TestPlanTCPOutsidePeer(t *testing.T) {
	m := tcpMeta(format.TCPEstablished)
	m.Files[8].Socket.Local = "127.0.0.1:5001"
	_, pl := testSession(t, m, Options{})
	if fp := pl.fileByID[8]; fp.Source != SrcTCP || !strings.Contains(fp.Note, "a peer outside the image") {
		t.Errorf("f8 planned as %v (%s)", fp.Source, fp.Note)
	}
	if len(pl.Warnings) != 2 || !strings.Contains(pl.Warnings[0], "still holds it") {
		t.Errorf("warnings %q, want one per connection whose peer is outside", pl.Warnings)
	}
}
