package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newDiffCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "diff",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("diff: not built yet") },
	}
}
