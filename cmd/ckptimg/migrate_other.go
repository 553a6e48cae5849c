//go:build !(linux && amd64)

package main

import (
	"github.com/spf13/cobra"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// newMigrateCommand: migrate captures live processes, which needs Linux on
// x86-64 (migrate.go); here it is listed all the same and says so.
func newMigrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "migrate PID --to CMD",
		Short:              "Move a running process (tree) to where CMD restores it (Linux on x86-64 only)",
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE: func(*cobra.Command, []string) error {
			return cli.NeedsLinuxAMD64("migrate")
		},
	}
}
