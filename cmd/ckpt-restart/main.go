// Command ckpt-restart restores a process tree from a checkpoint image and
// runs it in the foreground, as if the program had been started from the
// shell: it forwards the signals a shell sends and exits with the
// program's status. It needs nothing but itself and the image (and the
// files the image names). See docs/restore.md.
package main

import (
	"context"

	"github.com/ckptimg/ckptimg/cmd/internal/cli"
)

func main() {
	runAsInit()
	runAsLazyServer()
	cli.Main("ckpt-restart", func(ctx context.Context) error {
		return newRootCommand().ExecuteContext(ctx)
	})
}
