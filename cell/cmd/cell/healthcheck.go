package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"atende/cell"
)

// healthcheckFlag makes the binary probe a running cell instead of serving: `cell -healthcheck`.
// Cell images are built FROM scratch (no shell, no curl), so the container's HEALTHCHECK runs the
// cell binary itself in this mode.
const healthcheckFlag = "-healthcheck"

// healthcheckTimeout bounds the whole probe; Docker's own HEALTHCHECK timeout should not be shorter.
const healthcheckTimeout = 2 * time.Second

// healthcheck GETs http://<ATENDE_CELL_ADDR>/healthz, with an unspecified or empty host (the
// container listens on 0.0.0.0) replaced by the loopback address, and returns the process exit
// code Docker expects from a HEALTHCHECK command: 0 when the answer is 200, 1 otherwise (the reason
// goes to out, which Docker keeps in the container's health log).
func healthcheck(getenv func(string) string, out io.Writer) int {
	host, port, err := net.SplitHostPort(getenv(cell.EnvListenAddr))
	if err != nil {
		fmt.Fprintf(out, "healthcheck: %s: %v\n", cell.EnvListenAddr, err)
		return 1
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(out, "healthcheck: /healthz answered", resp.Status)
		return 1
	}
	return 0
}
