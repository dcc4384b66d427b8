package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"atende/traefik/traefiktest"
)

// TestTraefikInFrontOfStack puts a real Traefik v3 (built by `make traefik-bin`) with
// traefik/traefik.yml in front of the real stack, its file provider watching the directory the
// control plane writes dynamic.yml into, as in production. Tenants created and suspended through
// the API must be routed by Traefik to their real cells (which check the Host themselves), unknown
// hosts must get the "tenant not found" page, and an authenticated chat WebSocket must outlive a
// silence longer than the entry point's idle and read timeouts.
func TestTraefikInFrontOfStack(t *testing.T) {
	traefiktest.Binary(t) // skips with a clear message when `make traefik-bin` has not provided it
	const idle, read, hold = 2 * time.Second, 3 * time.Second, 5 * time.Second

	// Tenants' public URLs use Traefik's port, as they would use :80 in production.
	webPort := freePort(t)
	s := startStack(t, "ATENDE_PUBLIC_URL_PORT="+webPort)
	tr := traefiktest.Start(t, traefiktest.Options{
		StaticConfig: filepath.Join("..", "traefik", "traefik.yml"),
		DynamicDir:   filepath.Join(s.dataDir, "traefik"),
		WebAddr:      "127.0.0.1:" + webPort,
		IdleTimeout:  idle,
		ReadTimeout:  read,
	})
	host := func(key string) string { return key + ".localhost:" + webPort }
	// Without keep-alive, no request races Traefik closing a connection idle for 2s.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// viaTraefik calls a tenant host through Traefik.
	viaTraefik := func(key, method, path, token string, body any, out any) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, tr.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host(key)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s on %s through Traefik: %v", method, path, host(key), err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if out != nil && resp.StatusCode < 300 {
			if err := json.Unmarshal(data, out); err != nil {
				t.Fatalf("%s %s: decode %.200s: %v", method, path, data, err)
			}
		}
		return resp.StatusCode, string(data)
	}
	// eventually polls check until it holds (Traefik applies a rewritten file within moments).
	eventually := func(what string, check func() error) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			err := check()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// probe sends GET path to key's host through Traefik and returns the answer and the router
	// that served it. The control plane's edge router sits behind Traefik's catch-all and answers
	// live and suspended tenants too, so the answer alone would not prove Traefik routed it: the
	// request carries a unique User-Agent (a header traefik.yml keeps in the access log), and its
	// access-log line names the router.
	var probes int
	probe := func(key, path string) (int, string, string, error) {
		probes++
		ua := fmt.Sprintf("atende-e2e-traefik-probe-%d", probes)
		req, err := http.NewRequest("GET", tr.URL+path, nil)
		if err != nil {
			return 0, "", "", err
		}
		req.Host, req.Header["User-Agent"] = host(key), []string{ua}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for range 200 { // the line is written just after the response
			data, _ := os.ReadFile(tr.AccessLog)
			for _, line := range strings.Split(string(data), "\n") {
				var entry struct {
					RouterName string `json:"RouterName"`
					UserAgent  string `json:"request_User-Agent"`
				}
				if json.Unmarshal([]byte(line), &entry) == nil && entry.UserAgent == ua {
					return resp.StatusCode, string(body), entry.RouterName, nil
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		return 0, "", "", fmt.Errorf("no access-log line for %s", ua)
	}
	// routed checks that path on key's host answers status with body containing want, through
	// the router named router.
	routed := func(key, path string, status int, want, router string) func() error {
		return func() error {
			st, body, via, err := probe(key, path)
			if err != nil {
				return err
			}
			if st != status || !strings.Contains(body, want) || via != router {
				return fmt.Errorf("%s%s: %d through %q, body %.300s; want %d with %q through %q", host(key), path, st, via, body, status, want, router)
			}
			return nil
		}
	}
	named := func(key, name string) func() error {
		return routed(key, "/api/settings/public", http.StatusOK, `"name":"`+name+`"`, "tenant-"+key+"@file")
	}

	acme, _ := s.createTenant("acme")
	s.createTenant("globex")
	eventually("acme through Traefik", named("acme", "Acme"))
	eventually("globex through Traefik", named("globex", "Globex"))

	if err := routed("nobody", "/", http.StatusNotFound, "Tenant not found", "catch-all@file")(); err != nil {
		t.Errorf("unknown host: %v", err)
	}

	initech, _ := s.createTenant("initech")
	eventually("initech through Traefik", named("initech", "Initech"))
	if st, body := s.cp("POST", "/api/tenants/"+initech.ID+"/suspend", nil, nil); st != http.StatusAccepted {
		t.Fatalf("suspend initech: %d %s", st, body)
	}
	eventually("suspended initech gets the paused page through Traefik",
		routed("initech", "/console", http.StatusGone, "is suspended", "tenant-initech@file"))

	// An agent's WebSocket through Traefik: ticket, upgrade, silence, then application pings.
	var sess session
	if st, body := viaTraefik("acme", "POST", "/api/auth/login", "", map[string]string{"email": acme.Admin.Email, "password": acme.Admin.Password}, &sess); st != http.StatusOK {
		t.Fatalf("login through Traefik: %d %s", st, body)
	}
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if st, body := viaTraefik("acme", "POST", "/api/ws-ticket", sess.AccessToken, nil, &tk); st != http.StatusOK {
		t.Fatalf("ws ticket through Traefik: %d %s", st, body)
	}
	d := websocket.Dialer{
		NetDial:          func(network, _ string) (net.Conn, error) { return net.Dial(network, tr.Addr) },
		HandshakeTimeout: 10 * time.Second,
	}
	conn, resp, err := d.Dial("ws://"+host("acme")+"/ws?ticket="+tk.Ticket, http.Header{"Origin": {"http://" + host("acme")}})
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		t.Fatalf("WebSocket through Traefik: %v (status %d)", err, st)
	}
	defer conn.Close()
	ping := func(ref string) {
		t.Helper()
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := conn.WriteJSON(map[string]string{"type": "ping", "ref": ref}); err != nil {
			t.Fatalf("ping %s: %v", ref, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("waiting for pong %s: %v", ref, err)
			}
			var f frame
			if json.Unmarshal(data, &f) == nil && f.Type == "pong" && f.Ref == ref {
				return
			}
		}
	}
	ping("before")
	time.Sleep(hold) // silent: no frames either way (the cell pings only every 25s)
	ping("after-silence")
}
