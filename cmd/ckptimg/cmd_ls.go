package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newLsCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "ls",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("ls: not built yet") },
	}
}
