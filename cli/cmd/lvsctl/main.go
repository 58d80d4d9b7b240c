// Command lvsctl is the operator's client of the lvsctl controller.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lvsctl/lvsctl/cli/commands"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Run(ctx, os.Args[1:], commands.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv)
	stop()
	os.Exit(code)
}
