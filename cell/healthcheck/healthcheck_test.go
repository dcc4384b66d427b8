package healthcheck

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHTTP(t *testing.T) {
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
			if got := HTTP(tc.addr, io.Discard); got != tc.want {
				t.Fatalf("exit code %d, want %d", got, tc.want)
			}
		})
	}
}

func TestTarget(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080":  "127.0.0.1:8080",
		":27017":        "127.0.0.1:27017",
		"[::]:9000":     "[::1]:9000",
		"10.0.0.5:8080": "10.0.0.5:8080",
		"cell:8080":     "cell:8080",
	} {
		if got, err := Target(in); err != nil || got != want {
			t.Errorf("Target(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Target("no-port"); err == nil {
		t.Error("Target(\"no-port\") succeeded")
	}
}
