// gowork is the Go capture/restore target: several goroutines counting
// under a mutex, one goroutine spinning on the CPU (so GC needs async
// preemption), runtime.GC() every loop, and a 64 MiB pattern checked every
// loop. It prints "ready pid=P", then "count N sum=S" every interval.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func word(i int) uint64 { return uint64(i)*0x9E3779B97F4A7C15 ^ 0x5DEECE66D }

func main() {
	mib := flag.Int("pattern", 64, "pattern size in MiB")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between count lines")
	flag.Parse()

	pattern := make([]uint64, *mib<<20/8)
	for i := range pattern {
		pattern[i] = word(i)
	}
	var mu sync.Mutex
	var sum int64
	for w := 0; w < 4; w++ {
		go func() {
			for {
				mu.Lock()
				sum++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	var spins atomic.Int64
	go func() {
		for {
			spins.Add(1)
		}
	}()
	ticks := make(chan int)
	go func() {
		for n := 0; ; n++ {
			ticks <- n
			time.Sleep(*interval)
		}
	}()

	fmt.Printf("ready pid=%d\n", os.Getpid())
	for n := range ticks {
		runtime.GC()
		for i, v := range pattern {
			if v != word(i) {
				fmt.Printf("PATTERN FAIL at %d\n", i)
				break
			}
		}
		mu.Lock()
		s := sum
		mu.Unlock()
		fmt.Printf("count %d sum=%d spins=%t\n", n, s, spins.Load() > 0)
	}
}
