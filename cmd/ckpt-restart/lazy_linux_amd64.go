package main

import (
	"os"

	"github.com/ckptimg/ckptimg/restorer"
)

// runAsLazyServer runs ckpt-restart re-executed as the page server of a
// --lazy restore (restorer.RunLazyServer), and exits.
func runAsLazyServer() {
	if os.Args[0] == restorer.LazyServerName {
		os.Exit(restorer.RunLazyServer(os.Args[1:]))
	}
}

const lazyUsage = "run the program before its memory is in: anonymous memory is filled from the image on demand (userfaultfd) and in the background by a page server that exits when done and logs on this stderr; an unreadable or corrupt page kills the program (root only)"
