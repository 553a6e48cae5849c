package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newCatCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "cat",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("cat: not built yet") },
	}
}
