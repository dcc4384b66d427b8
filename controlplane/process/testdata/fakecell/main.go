// Command fakecell stands in for the cell binary in the process driver's tests: it serves
// GET /healthz on $ATENDE_CELL_ADDR and answers with its pid, and GET /kid with its signing kid
// and its previous keys ($ATENDE_CELL_SIGNING_KID, a newline, $ATENDE_CELL_PREVIOUS_KEYS), and
// GET /tenancy with $ATENDE_CELL_TENANCY. With FAKECELL_IGNORE_TERM=1 it
// ignores SIGTERM; with FAKECELL_EXIT=1 it exits at once with status 1.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getenv("FAKECELL_EXIT") == "1" {
		fmt.Fprintln(os.Stderr, "fakecell: told to fail")
		os.Exit(1)
	}
	if os.Getenv("FAKECELL_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Println("fakecell: listening on", os.Getenv("ATENDE_CELL_ADDR"), "tenant", os.Getenv("ATENDE_CELL_TENANT_ID"))
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d", os.Getpid())
	})
	http.HandleFunc("/kid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n%s", os.Getenv("ATENDE_CELL_SIGNING_KID"), os.Getenv("ATENDE_CELL_PREVIOUS_KEYS"))
	})
	http.HandleFunc("/tenancy", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv("ATENDE_CELL_TENANCY"))
	})
	if err := http.ListenAndServe(os.Getenv("ATENDE_CELL_ADDR"), nil); err != nil {
		fmt.Fprintln(os.Stderr, "fakecell:", err)
		os.Exit(1)
	}
}
