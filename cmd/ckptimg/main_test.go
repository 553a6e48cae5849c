package main

import (
	"os"
	"sync"
	"testing"
)

// builtDirs are the directories tests made for binaries they build once
// per test binary; TestMain removes them at the end.
var (
	builtMu   sync.Mutex
	builtDirs []string
)

// builtDir makes a temporary directory that lives until the test binary
// ends.
func builtDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		builtMu.Lock()
		builtDirs = append(builtDirs, dir)
		builtMu.Unlock()
	}
	return dir, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range builtDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}
