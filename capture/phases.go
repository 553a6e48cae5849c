package capture

import (
	"sync/atomic"
	"time"
)

// Phase is the time one step of a capture took. The memory pipeline's
// steps ("pagemap", "read memory" summed over the readers, "wait for reads",
// "add pages", which includes waiting for the writer) run concurrently with
// each other and with the writer's compression and writes, so they are
// busy times that may sum to more than the wall time; "memory" is that
// pipeline's wall time.
type Phase struct {
	Name string
	Time time.Duration
}

// phases accumulates step times by name, in first-seen order.
type phases struct {
	list []Phase
}

// add adds d to the phase name.
func (p *phases) add(name string, d time.Duration) {
	for i := range p.list {
		if p.list[i].Name == name {
			p.list[i].Time += d
			return
		}
	}
	p.list = append(p.list, Phase{Name: name, Time: d})
}

// start returns a function that adds the time since start to name.
func (p *phases) start(name string) func() {
	t := time.Now()
	return func() { p.add(name, time.Since(t)) }
}

// busy is a duration summed from another goroutine.
type busy struct{ ns atomic.Int64 }

func (b *busy) since(t time.Time) { b.ns.Add(int64(time.Since(t))) }

func (b *busy) get() time.Duration { return time.Duration(b.ns.Load()) }
