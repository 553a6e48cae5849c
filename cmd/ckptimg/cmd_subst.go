package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder: replaced by the command's implementation.
func newSubstCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "subst",
		Short:  "(not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("subst: not built yet") },
	}
}
