//go:build !(linux && amd64)

package main

// runAsLazyServer: there is no --lazy restore here.
func runAsLazyServer() {}
