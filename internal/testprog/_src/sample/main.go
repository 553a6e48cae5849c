// sample is the program `make demo` captures and restores: it counts,
// keeps a running checksum of its own heap and appends every count to a
// file, so a restore that loses memory or a file offset shows.
package main

import (
	"fmt"
	"hash/crc32"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sample FILE")
		os.Exit(2)
	}
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	heap := make([]byte, 32<<20)
	for i := range heap {
		heap[i] = byte(i * 7)
	}
	want := crc32.ChecksumIEEE(heap)
	for n := 0; ; n++ {
		status := "heap ok"
		if crc32.ChecksumIEEE(heap) != want {
			status = "HEAP CHANGED"
		}
		fmt.Printf("sample pid %d: count %d, %s\n", os.Getpid(), n, status)
		fmt.Fprintf(f, "%d\n", n)
		time.Sleep(500 * time.Millisecond)
	}
}
