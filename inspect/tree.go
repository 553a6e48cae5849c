package inspect

import "github.com/ckptimg/ckptimg/format"

// TreeProc is one process of the process tree, with its threads and the
// processes whose parent it is.
type TreeProc struct {
	PID        int32        `json:"pid"`
	PPID       int32        `json:"ppid"`
	Comm       string       `json:"comm"`
	Cmdline    []string     `json:"cmdline"`
	Exited     bool         `json:"exited"`
	ExitStatus int32        `json:"exit_status"`
	Threads    []TreeThread `json:"threads"`
	Children   []TreeProc   `json:"children"`
}

// TreeThread is one thread of a TreeProc.
type TreeThread struct {
	TID  int32  `json:"tid"`
	Comm string `json:"comm"`
}

// Tree returns an image's processes (Meta.Processes) as a tree, as `ps f` shows one: the
// roots are the processes whose parent is not in the image, in image
// order, each followed by its children in image order. A process that
// only a loop of parents reaches (an image can claim anything) becomes a
// root too, so every process appears exactly once.
func Tree(procs []format.Process) []TreeProc {
	index := make(map[int32]int, len(procs))
	for i, p := range procs {
		if _, dup := index[p.PID]; !dup {
			index[p.PID] = i
		}
	}
	children := make([][]int, len(procs))
	var roots []int
	for i, p := range procs {
		if j, ok := index[p.PPID]; ok && j != i {
			children[j] = append(children[j], i)
		} else {
			roots = append(roots, i)
		}
	}
	placed := make([]bool, len(procs))
	var build func(i int) TreeProc
	build = func(i int) TreeProc {
		placed[i] = true
		p := &procs[i]
		n := TreeProc{PID: p.PID, PPID: p.PPID, Comm: p.Comm, Cmdline: p.Cmdline, Exited: p.Exited,
			ExitStatus: p.ExitStatus, Threads: []TreeThread{}, Children: []TreeProc{}}
		if n.Cmdline == nil {
			n.Cmdline = []string{}
		}
		for _, t := range p.Threads {
			n.Threads = append(n.Threads, TreeThread{TID: t.TID, Comm: t.Comm})
		}
		for _, c := range children[i] {
			if !placed[c] {
				n.Children = append(n.Children, build(c))
			}
		}
		return n
	}
	out := []TreeProc{}
	for _, i := range roots {
		out = append(out, build(i))
	}
	for i := range procs {
		if !placed[i] {
			out = append(out, build(i))
		}
	}
	return out
}
