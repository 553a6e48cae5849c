package restorer

import (
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/format"
)

// unixMeta is testMeta with unix sockets s at fds 10, 11, ... as files
// f8, f9, ...
func unixMeta(socks ...format.SocketInfo) *format.Meta {
	m := testMeta()
	for i, s := range socks {
		id := uint32(8 + i)
		s := s
		m.Files = append(m.Files, format.File{ID: id, Type: format.FileUnix, Name: "socket:[x]", Flags: 2, Socket: &s})
		m.Processes[0].FDs = append(m.Processes[0].FDs, format.FD{Num: int32(10 + i), FileID: id})
	}
	return m
}

// unixProblems returns the problems of the plan of m that name a file
// f8 or later, as text.
func unixProblems(pl *Plan) string {
	var out []string
	for _, p := range pl.Problems {
		if !strings.Contains(p.Subject, "f6 ") {
			out = append(out, p.Subject+": "+p.What+" ("+p.Remedy+")")
		}
	}
	return strings.Join(out, "\n")
}

func TestPlanUnixSockets(t *testing.T) {
	const stream, dgram = sockStream, sockDgram
	conn := format.SocketConnected
	tests := []struct {
		name   string
		socks  []format.SocketInfo
		opts   Options
		want   []Source // per socket
		reason string   // in the problems, when want holds a 0
	}{
		{"pair", []format.SocketInfo{{Family: 1, Type: stream, State: conn, Ino: 1, PeerIno: 2, Queued: []byte("ab")}, {Family: 1, Type: stream, State: conn, Ino: 2, PeerIno: 1}},
			Options{}, []Source{SrcSocketpair, SrcSocketpair}, ""},
		{"peer closed", []format.SocketInfo{{Family: 1, Type: dgram, State: conn, Ino: 1, PeerClosed: true, Queued: []byte("abc"), Messages: []uint32{1, 2}}},
			Options{}, []Source{SrcSocketpair}, ""},
		{"messages do not add up", []format.SocketInfo{{Family: 1, Type: dgram, State: conn, Ino: 1, PeerClosed: true, Queued: []byte("abc"), Messages: []uint32{1, 1}}},
			Options{}, []Source{0}, "message lengths do not add up"},
		{"stream outside", []format.SocketInfo{{Family: 1, Type: stream, State: conn, Ino: 1, PeerIno: 9, Peer: "/run/srv"}},
			Options{}, []Source{0}, "reconnect it to /run/srv with ckpt-restart --ext-unix-sk"},
		{"stream outside, --ext-unix-sk", []format.SocketInfo{{Family: 1, Type: stream, State: conn, Ino: 1, PeerIno: 9, Peer: "/run/srv"}},
			Options{ExtUnixSk: true}, []Source{SrcConnect}, ""},
		{"dgram outside", []format.SocketInfo{{Family: 1, Type: dgram, State: conn, Ino: 1, PeerIno: 9, Peer: "/dev/log"}},
			Options{}, []Source{SrcConnect}, ""},
		{"outside with queued bytes", []format.SocketInfo{{Family: 1, Type: dgram, State: conn, Ino: 1, PeerIno: 9, Peer: "/dev/log", Queued: []byte("x"), Messages: []uint32{1}}},
			Options{}, []Source{0}, "with 1 bytes queued from it"},
		{"outside, no name", []format.SocketInfo{{Family: 1, Type: stream, State: conn, Ino: 1, PeerIno: 9}},
			Options{ExtUnixSk: true}, []Source{0}, "whose other end is outside the image"},
		{"unaccepted inside", []format.SocketInfo{{Family: 1, Type: stream, State: format.SocketListening, Ino: 1, Local: "@l", Pending: 1}, {Family: 1, Type: stream, State: conn, Ino: 2, Peer: "@l", Unaccepted: true}},
			Options{}, []Source{SrcListen, SrcConnect}, ""},
		{"unaccepted from outside", []format.SocketInfo{{Family: 1, Type: stream, State: format.SocketListening, Ino: 1, Local: "@l", Pending: 2}, {Family: 1, Type: stream, State: conn, Ino: 2, Peer: "@l", Unaccepted: true}},
			Options{}, []Source{SrcListen, SrcConnect}, "1 connections not accepted yet from outside the image"},
		{"bound dgram", []format.SocketInfo{{Family: 1, Type: dgram, Ino: 1, Local: "/run/dg"}},
			Options{}, []Source{SrcListen}, ""},
		{"bound dgram with queue", []format.SocketInfo{{Family: 1, Type: dgram, Ino: 1, Local: "/run/dg", Queued: []byte("x"), Messages: []uint32{1}}},
			Options{}, []Source{0}, "unconnected unix socket with 1 queued bytes"},
		{"dgram client of a bound socket", []format.SocketInfo{{Family: 1, Type: dgram, State: conn, Ino: 1, PeerIno: 2, Peer: "/run/log"}, {Family: 1, Type: dgram, Ino: 2, Local: "/run/log"}},
			Options{}, []Source{SrcConnect, SrcListen}, ""},
		{"peer unsupported", []format.SocketInfo{{Family: 1, Type: stream, State: conn, Ino: 1, PeerIno: 2}, {Family: 1, Type: 3, State: conn, Ino: 2, PeerIno: 1}},
			Options{}, []Source{0, 0}, "whose other end f9 cannot be restored with it"},
	}
	// An accepted connection and its client go through their listener.
	_, pl := testSession(t, unixMeta(
		format.SocketInfo{Family: 1, Type: stream, State: format.SocketListening, Ino: 1, Local: "/run/l"},
		format.SocketInfo{Family: 1, Type: stream, State: conn, Ino: 2, PeerIno: 3, Local: "/run/l"},
		format.SocketInfo{Family: 1, Type: stream, State: conn, Ino: 3, PeerIno: 2, Peer: "/run/l"}), Options{})
	if l, acc, cl := pl.fileByID[8], pl.fileByID[9], pl.fileByID[10]; acc.Listener != l || cl.Listener != l || acc.Peer != cl {
		t.Errorf("accepted pair not planned through its listener: %+v %+v", acc, cl)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, pl := testSession(t, unixMeta(tt.socks...), tt.opts)
			for i, want := range tt.want {
				fp := pl.fileByID[uint32(8+i)]
				if fp.Source != want {
					t.Errorf("f%d: source %v, want %v (%s)\n%s", 8+i, fp.Source, want, fp.Note, unixProblems(pl))
				}
			}
			probs := unixProblems(pl)
			if tt.reason == "" && probs != "" {
				t.Errorf("problems:\n%s", probs)
			}
			if tt.reason != "" && !strings.Contains(probs, tt.reason) {
				t.Errorf("problems do not say %q:\n%s", tt.reason, probs)
			}
		})
	}
}

// TestPlanUnixQueueBound: an image cannot make the restorer hold more
// than maxSocketQueue bytes of one socket.
func TestPlanUnixQueueBound(t *testing.T) {
	m := unixMeta(format.SocketInfo{Family: 1, Type: sockStream, State: format.SocketConnected, Ino: 1, PeerClosed: true, QueuedBlob: 1})
	m.Blobs = []format.Blob{{Size: maxSocketQueue + 1}}
	pl := &Plan{Meta: m, fileByID: map[uint32]*FilePlan{}}
	if _, ok := pl.socketQueueLen(m.Files[len(m.Files)-1].Socket); ok {
		t.Errorf("a queue of %d bytes accepted", maxSocketQueue+1)
	}
}
