// Command ckpt-restart restores a process tree from a checkpoint image.
package main

import (
	"context"
	"errors"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

// Placeholder: replaced by the restorer's command.
func main() {
	cli.Main("ckpt-restart", func(ctx context.Context) error { return errors.New("not built yet") })
}
