// Command ctl is the super-admin CLI of Atende. It talks only to the control-plane API (see
// atende/controlplane/api): it creates, lists, inspects, suspends, resumes, deletes, exports and
// imports tenants (export.go) and shows their cells' status and logs.
//
// Global flags: --api URL (env ATENDE_API, default http://127.0.0.1:8081), --token T (env
// ATENDE_TOKEN; default: the content of $ATENDE_DATA_DIR/superadmin.token, ATENDE_DATA_DIR
// defaulting to ./.atende), --json, --yes.
//
// Exit codes: 0 success, 1 failure (the error is printed as "error: <message> (<code>)"),
// 2 usage error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
