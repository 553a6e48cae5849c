package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newMergeCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "merge",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("merge: not built yet") },
	}
}
