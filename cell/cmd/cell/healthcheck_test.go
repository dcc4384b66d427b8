package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"atende/cell"
)

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name, addr string
		status     int
		want       int
	}{
		{"loopback 200", "127.0.0.1:" + port, http.StatusOK, 0},
		{"unspecified host means loopback", "0.0.0.0:" + port, http.StatusOK, 0},
		{"empty host means loopback", ":" + port, http.StatusOK, 0},
		{"503 is unhealthy", "127.0.0.1:" + port, http.StatusServiceUnavailable, 1},
		{"nobody listening", closedAddr, http.StatusOK, 1},
		{"no address", "", http.StatusOK, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status = tc.status
			env := map[string]string{cell.EnvListenAddr: tc.addr}
			if got := healthcheck(func(k string) string { return env[k] }, io.Discard); got != tc.want {
				t.Fatalf("exit code %d, want %d", got, tc.want)
			}
		})
	}
}
