//go:build !(linux && amd64)

package main

import (
	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// newMigrateCommand: migrate captures live processes, which needs Linux on
// x86-64 (migrate.go).
func newMigrateCommand() *cobra.Command {
	return cli.LinuxAMD64Only("migrate PID --to CMD", "Move a running process (tree) to where CMD restores it", "migrate")
}
