#!/bin/sh
# `make demo`: start a sample program, capture it, list the image, kill it,
# restart it with ckpt-restart and show it continuing. Needs root (exact
# PIDs: the sample is a Go program, whose threads must keep their TIDs).
set -eu
BIN=${BIN:-bin}
GO=${GO:-go}
if [ "$(id -u)" != 0 ]; then
	echo "make demo restores exact PIDs, which needs root: run it as root (sudo make demo)" >&2
	exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckptimg-demo.XXXXXX")
cleanup() {
	[ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
CGO_ENABLED=0 $GO build -o "$dir/sample" ./internal/testprog/_src/sample

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start the sample program (it prints a count every 0.5 s)"
"$dir/sample" "$dir/counts.txt" >"$dir/sample.log" 2>&1 &
pid=$!
sleep 2
cat "$dir/sample.log"

step "capture it into $dir/sample.ckpt and kill it"
"$BIN/ckptimg" capture "$pid" -o "$dir/sample.ckpt" --kill
wait "$pid" 2>/dev/null || true
echo "pid $pid is gone: $(kill -0 "$pid" 2>&1 || true)"

step "ckptimg ls $dir/sample.ckpt"
"$BIN/ckptimg" ls "$dir/sample.ckpt" || true

step "ckpt-restart --check, then restart it: the count goes on where it stopped"
"$BIN/ckpt-restart" --check "$dir/sample.ckpt"
before=$(wc -l <"$dir/sample.log")
"$BIN/ckpt-restart" "$dir/sample.ckpt" >>"$dir/sample.log" 2>&1 &
rpid=$!
sleep 2.5
echo "(lines before the capture, then after the restart)"
tail -n +$((before - 1)) "$dir/sample.log"
echo "pid $pid is back: $(ps -o pid=,comm= -p "$pid")"

step "stop it: ckpt-restart forwards SIGTERM and exits with the program's status"
kill -TERM "$rpid"
status=0
wait "$rpid" || status=$?
echo "ckpt-restart exited with status $status (128+15: killed by SIGTERM)"
echo "the count file continues with no gap: $(tr '\n' ' ' <"$dir/counts.txt")"
pid=
