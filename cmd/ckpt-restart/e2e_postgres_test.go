package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptimg/ckptimg/capture"
	"github.com/ckptimg/ckptimg/format"
	"github.com/ckptimg/ckptimg/internal/testprog"
)

// PostgreSQL from Debian's postgresql package, as a user runs it: the
// postmaster and its background processes share a System V segment, a
// shared anonymous mapping of its buffers and locks, POSIX shared memory
// in /dev/shm, and pipes. Captured with --tree --kill, restored, captured
// again and restored again; a table created before the first capture is
// queried and written after each restore by a new psql connection.

const pgBin = "/usr/lib/postgresql/15/bin"

// pgServer is a PostgreSQL cluster in a test directory, listening on a
// unix socket only.
type pgServer struct {
	sock string
	port string
}

func (s *pgServer) psql(t *testing.T, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testprog.Timeout)
	defer cancel()
	cmd := testprog.CommandContext(t, ctx, "psql", "-X", "-At", "-h", s.sock, "-p", s.port, "-U", "postgres", "-d", "postgres", "-c", sql)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (s *pgServer) mustPsql(t *testing.T, sql string) string {
	t.Helper()
	out, err := s.psql(t, sql)
	if err != nil {
		t.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return out
}

// quiet waits until the postmaster has no backend left from a client and
// no child waiting to be reaped, so that the capture finds only the
// server's own processes.
func (s *pgServer) quiet(t *testing.T, pid int) {
	t.Helper()
	testprog.Eventually(t, testprog.Timeout, func() error {
		kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return err
		}
		for _, k := range strings.Fields(string(kids)) {
			st, _ := os.ReadFile("/proc/" + k + "/stat")
			cmdline, _ := os.ReadFile("/proc/" + k + "/cmdline")
			if _, rest, ok := strings.Cut(string(st), ") "); ok && strings.HasPrefix(rest, "Z") || strings.Contains(string(cmdline), "[local]") {
				return fmt.Errorf("child %s of the postmaster is a client's backend or a zombie: %q", k, cmdline)
			}
		}
		return nil
	})
}

func TestRestorePostgres(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat(pgBin + "/postgres"); err != nil {
		t.Fatalf("PostgreSQL 15 is not installed (Debian package postgresql, which .ci/run installs): %v", err)
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (Debian package postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	dir := testDir(t)
	// The postgres user must reach its directories under the test's.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "pg")
	data, sock := filepath.Join(home, "data"), filepath.Join(home, "sock")
	for _, d := range []string{home, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	asPostgres := []string{"--reuid=postgres", "--regid=postgres", "--init-groups"}
	initdb := testprog.Command(t, "setpriv", append(asPostgres, pgBin+"/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")...)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s := &pgServer{sock: sock, port: strconv.Itoa(40000 + os.Getpid()%20000)}
	p := testprog.StartNoWait(t, "setpriv", append(asPostgres, pgBin+"/postgres", "-D", data, "-k", sock, "-p", s.port,
		"-c", "listen_addresses=", "-c", "shared_buffers=16MB")...)
	testprog.Eventually(t, testprog.Timeout, func() error {
		out, err := s.psql(t, "select 1")
		if err != nil {
			return fmt.Errorf("psql: %v: %s\npostgres: %s", err, out, p.Stderr())
		}
		return nil
	})
	s.mustPsql(t, "create table kept (n int, note text); insert into kept values (1, 'before capture')")

	round := func(img string, drain func()) *restarted {
		s.quiet(t, p.PID)
		pids := captureKillServer(t, p.PID, img)
		t.Cleanup(func() { removePgShared(t, img) })
		drain()
		return startRestart(t, pids, img)
	}
	check := func(r *restarted, n int) {
		t.Helper()
		var out string
		testprog.Eventually(t, testprog.Timeout, func() error {
			var err error
			if out, err = s.psql(t, "select count(*), max(n) from kept"); err != nil {
				_, stderr := r.snapshot()
				return fmt.Errorf("psql after restore: %v: %s\nckpt-restart and postgres: %s", err, out, stderr)
			}
			return nil
		})
		if want := fmt.Sprintf("%d|%d", n, n); out != want {
			t.Fatalf("after restore %d the table holds count|max %q, want %q", n, out, want)
		}
		s.mustPsql(t, fmt.Sprintf("insert into kept values (%d, 'after restore %d')", n+1, n))
		// A checkpoint needs the checkpointer, a background process, to
		// see the request in shared memory and answer through it.
		s.mustPsql(t, "checkpoint")
		if got := s.mustPsql(t, "select string_agg(note, ',' order by n) from kept"); !strings.HasSuffix(got, fmt.Sprintf("after restore %d", n)) {
			t.Fatalf("the table holds %q after the insert", got)
		}
	}
	r1 := round(filepath.Join(dir, "1.ckpt"), func() { p.Wait(t, testprog.Timeout) })
	check(r1, 1)
	r2 := round(filepath.Join(dir, "2.ckpt"), func() { <-r1.done })
	check(r2, 2)
	if got := s.mustPsql(t, "select count(*) from pg_stat_activity where backend_type in ('checkpointer', 'background writer', 'walwriter')"); got != "3" {
		t.Errorf("%s of the checkpointer, background writer and walwriter are seen in shared memory, want 3", got)
	}
}

// captureKillServer captures the tree of pid and kills it, as
// captureKill does, but captures again while the image holds a zombie (a
// worker the server had not reaped yet at the freeze), as a user would
// after capture --kill refused.
func captureKillServer(t *testing.T, pid int, img string) []int {
	t.Helper()
	var res *capture.Result
	testprog.Eventually(t, testprog.Timeout, func() error {
		f, err := os.Create(img)
		if err != nil {
			return err
		}
		defer f.Close()
		w, err := format.NewWriter(f)
		if err != nil {
			return err
		}
		res, err = capture.Capture(testprog.Context(t), pid, w, capture.Options{Kill: true, Tree: true,
			CheckKill: func(m *format.Meta) error {
				for _, p := range m.Processes {
					if p.Exited {
						return fmt.Errorf("process %d is a zombie", p.PID)
					}
				}
				return nil
			}})
		return err
	})
	var pids []int
	for _, p := range res.Meta.Processes {
		waitGone(t, int(p.PID))
		pids = append(pids, int(p.PID))
	}
	testprog.KillAtCleanup(t, pids...)
	return pids
}

// removePgShared removes what a killed PostgreSQL leaves behind outside
// its data directory: its System V segment and its POSIX shared memory.
func removePgShared(t *testing.T, img string) {
	r, err := format.Open(img)
	if err != nil {
		return
	}
	defer r.Close()
	m := r.Meta()
	if m.IPC != nil {
		for _, s := range m.IPC.Shm {
			removeShmKey(s.Perm.Key)
		}
	}
	for _, p := range m.Processes {
		for _, a := range p.Areas {
			if strings.HasPrefix(a.Name, "/dev/shm/PostgreSQL.") {
				os.Remove(a.Name)
			}
		}
	}
}
