// Package healthcheck is the probe our FROM-scratch images run as their Docker HEALTHCHECK (they
// have no shell and no curl, so each binary probes itself with a -healthcheck flag): the cell,
// the s3server and the mongoserver share it.
package healthcheck

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Timeout bounds a whole probe (2 s); Docker's own HEALTHCHECK timeout should not be shorter.
const Timeout = 2 * time.Second

// Target returns the address a probe dials for a server listening on listen ("host:port"): an
// empty or unspecified host (a container listens on 0.0.0.0 or [::]) becomes the loopback of the
// same family. It fails when listen is not host:port.
func Target(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// HTTP GETs http://<Target(listen)>/healthz within Timeout and returns the exit code Docker
// expects from a HEALTHCHECK command: 0 when the answer is 200, 1 otherwise, with the reason
// written to out (Docker keeps it in the container's health log).
func HTTP(listen string, out io.Writer) int {
	target, err := Target(listen)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/healthz", nil)
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
