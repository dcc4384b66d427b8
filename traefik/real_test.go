package traefik_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"atende/controlplane/edge"
	"atende/templates"
	"atende/traefik"
	"atende/traefik/traefiktest"
)

// The real Traefik test's timeouts: the entry point closes keep-alive connections idle for
// realIdleTimeout and gives a request realReadTimeout to arrive; a WebSocket is then held silent
// for realHold, longer than both, and must survive.
const (
	realIdleTimeout = 2 * time.Second
	realReadTimeout = 3 * time.Second
	realHold        = 5 * time.Second
	realDomain      = "atende.test"
)

// cellSaw is what a cell stand-in reports about the request it received.
type cellSaw struct {
	Cell           string `json:"cell"`
	Host           string `json:"host"`
	Path           string `json:"path"`
	XForwardedFor  string `json:"xff"`
	XForwardedHost string `json:"xfh"`
	XRealIP        string `json:"xri"`
	// ViaEdge is true when the request came through the edge router behind Traefik's catch-all
	// (which also proxies live tenants) rather than through the tenant's own Traefik router.
	ViaEdge bool `json:"viaEdge"`
}

// viaEdgeHeader marks requests that passed through the test's edge server, so a tenant request
// that fell through to the catch-all cannot pass for one Traefik routed itself.
const viaEdgeHeader = "X-Test-Via-Edge"

// servedByHeader names, in answers from the test's edge servers, the Traefik service they stand
// behind: traefik.FallbackService or traefik.PausedService.
const servedByHeader = "X-Test-Served-By"

// newCell starts a stand-in for one tenant's cell on loopback: it answers every path with what
// it saw as JSON, and echoes WebSocket messages on /ws prefixed with its name and the Host.
func newCell(t *testing.T, name string) *httptest.Server {
	t.Helper()
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if err := conn.WriteMessage(typ, []byte(name+"|"+r.Host+"|"+string(msg))); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(cellSaw{
			Cell:           name,
			Host:           r.Host,
			Path:           r.URL.RequestURI(),
			XForwardedFor:  strings.Join(r.Header.Values("X-Forwarded-For"), ","),
			XForwardedHost: strings.Join(r.Header.Values("X-Forwarded-Host"), ","),
			XRealIP:        strings.Join(r.Header.Values("X-Real-Ip"), ","),
			ViaEdge:        r.Header.Get(viaEdgeHeader) != "",
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// realStack is Traefik in front of cell stand-ins, with the control plane's edge router (and its
// real platform pages) behind the fallback and paused services, wired as controlplane/cmd does.
type realStack struct {
	tr      *traefiktest.Traefik
	edge    *edge.Router
	opts    traefik.Options
	dynamic string // the file the control plane would write
	port    string // the Traefik entry point's port, part of Host headers as a browser sends them
	client  *http.Client
}

// publish renders routes with traefik.Build and writes them atomically where Traefik watches,
// and gives the same table to the edge router, exactly like the control plane's publish step.
func (s *realStack) publish(t *testing.T, routes []traefik.Route) {
	t.Helper()
	s.edge.SetRoutes(routes)
	data, err := traefik.Build(routes, s.opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if err := traefik.WriteFile(s.dynamic, data); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
}

// get sends GET path through Traefik with the given Host header (and extra headers) and returns
// the status, headers and body.
func (s *realStack) get(t *testing.T, host, path string, header http.Header) (int, http.Header, string, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.tr.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), err
}

// waitFor polls check every 50ms until it returns nil, failing the test with its last error
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reachesCell checks that host is answered by the named cell, which saw the Host unchanged.
func (s *realStack) reachesCell(t *testing.T, host, cell string) error {
	t.Helper()
	status, _, body, err := s.get(t, host, "/api/settings/public", nil)
	if err != nil {
		return err
	}
	var saw cellSaw
	if status != http.StatusOK || json.Unmarshal([]byte(body), &saw) != nil {
		return fmt.Errorf("%s: status %d, body %.200q; want 200 from cell %s", host, status, body, cell)
	}
	if saw.Cell != cell || saw.Host != host {
		return fmt.Errorf("%s reached cell %q with Host %q; want cell %q with Host %q", host, saw.Cell, saw.Host, cell, host)
	}
	if saw.ViaEdge {
		return fmt.Errorf("%s reached cell %s through the catch-all and the edge router, not its own router", host, cell)
	}
	return nil
}

// dialWS opens a WebSocket to /ws through Traefik with the given Host header.
func (s *realStack) dialWS(t *testing.T, host string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws://"+s.tr.Addr+"/ws?token=ws-secret-token", http.Header{"Host": {host}, "Origin": {"http://" + host}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket to %s through Traefik: %v (status %d)", host, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// echo sends msg on conn and checks the cell's reply "<cell>|<host>|<msg>" arrives within 5s.
func echo(t *testing.T, conn *websocket.Conn, cell, host, msg string) {
	t.Helper()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read reply to %q: %v", msg, err)
	}
	if want := cell + "|" + host + "|" + msg; string(got) != want {
		t.Fatalf("reply = %q, want %q", got, want)
	}
}

// pingPong sends a WebSocket ping control frame followed by a message, and checks that the pong
// (answered by the cell stand-in's library, in order) arrives before the message's echo.
func pingPong(t *testing.T, conn *websocket.Conn, cell, host, data string) {
	t.Helper()
	pong := make(chan string, 1)
	conn.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := conn.WriteControl(websocket.PingMessage, []byte(data), time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("ping: %v", err)
	}
	echo(t, conn, cell, host, "after ping")
	select {
	case got := <-pong:
		if got != data {
			t.Fatalf("pong payload = %q, want %q", got, data)
		}
	default:
		t.Fatal("no pong before the echo of the next message")
	}
}

// TestRealTraefik runs a real Traefik v3 (built by `make traefik-bin`) with traefik/traefik.yml and
// the dynamic configuration traefik.Build renders, and checks what production relies on: each
// tenant host reaches its own cell with the Host unchanged, unknown hosts get the "tenant not
// found" page, a suspended tenant gets the paused page (410), a rewritten file is picked up
// without a restart, a WebSocket stays open while silent for longer than the entry point's idle
// and read timeouts (and across a reload), client-sent forwarding headers are not believed, and
// the access log never holds the query string (where WebSocket tokens travel).
func TestRealTraefik(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Traefik; skipped in -short mode")
	}
	traefiktest.Binary(t) // skips with a clear message when `make traefik-bin` has not provided it

	acme, globex, hooli := newCell(t, "acme"), newCell(t, "globex"), newCell(t, "hooli")

	// The control plane's edge router answers Traefik's fallback and paused services by Host,
	// with the real platform pages (controlplane/cmd/controlplane wires it the same way).
	data := templates.Data{Title: "Atende", Domain: realDomain}
	router := edge.New(edge.Options{
		Domain:   realDomain,
		Landing:  templates.PlatformHandler("landing.html", http.StatusOK, "not_found", "no tenant on this host", data),
		NotFound: templates.PlatformHandler("notfound.html", http.StatusNotFound, "not_found", "tenant not found", data),
		Paused:   templates.PlatformHandler("paused.html", http.StatusGone, "suspended", "this tenant is suspended", data),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	// Production points both services at the edge's one address. Here each gets its own server
	// in front of the same edge router, answering with a servedByHeader, so the test sees which
	// Traefik service (hence which router) handled a request: a suspended tenant falling through
	// to the catch-all would get the same page from the edge.
	edgeFor := func(service string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set(viaEdgeHeader, "1") // the edge proxies live tenants too: mark what it forwards
			w.Header().Set(servedByHeader, service)
			router.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	fallbackSrv, pausedSrv := edgeFor(traefik.FallbackService), edgeFor(traefik.PausedService)

	dynamicDir := t.TempDir()
	s := &realStack{
		edge:    router,
		opts:    traefik.Options{EntryPoints: []string{traefiktest.EntryPoint}, FallbackURL: fallbackSrv.URL, PausedURL: pausedSrv.URL},
		dynamic: filepath.Join(dynamicDir, "dynamic.yml"),
		client: &http.Client{
			Timeout: 10 * time.Second,
			// Idle connections are dropped before Traefik's idleTimeout closes them, so a request
			// never races the server closing the connection it reuses.
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: realIdleTimeout / 2},
		},
	}
	t.Cleanup(s.client.CloseIdleConnections)
	host := func(key string) string { return key + "." + realDomain + ":" + s.port }

	routes := []traefik.Route{
		{TenantID: "t1acme", Key: "acme", Hosts: []string{"acme." + realDomain, "chat.acme.example"}, Backend: acme.URL, State: traefik.StateLive},
		{TenantID: "t2globex", Key: "globex", Hosts: []string{"globex." + realDomain}, Backend: globex.URL, State: traefik.StateLive},
		{TenantID: "t3initech", Key: "initech", Hosts: []string{"initech." + realDomain}, State: traefik.StateSuspended},
	}
	s.publish(t, routes) // before Traefik starts: the file provider reads it at start-up

	started := time.Now()
	s.tr = traefiktest.Start(t, traefiktest.Options{
		StaticConfig: "traefik.yml",
		DynamicDir:   dynamicDir,
		IdleTimeout:  realIdleTimeout,
		ReadTimeout:  realReadTimeout,
	})
	_, s.port, _ = net.SplitHostPort(s.tr.Addr)
	took := waitFor(t, 15*time.Second, "Traefik routes acme from the initial file", func() error {
		return s.reachesCell(t, host("acme"), "acme")
	})
	t.Logf("traefik ping after %s, routing acme %s later", time.Since(started)-took, took)

	t.Run("tenant hosts reach their own cell", func(t *testing.T) {
		for _, tt := range []struct{ host, cell string }{
			{host("acme"), "acme"},
			{host("globex"), "globex"},
			{"acme." + realDomain, "acme"},                      // no port, as on :80
			{"chat.acme.example", "acme"},                       // second host of a route: "Host(a) || Host(b)"
			{"GLOBEX." + strings.ToUpper(realDomain), "globex"}, // Host matching ignores case
		} {
			want := tt.cell
			status, _, body, err := s.get(t, tt.host, "/api/settings/public?x=1", nil)
			if err != nil {
				t.Fatalf("%s: %v", tt.host, err)
			}
			var saw cellSaw
			if status != http.StatusOK || json.Unmarshal([]byte(body), &saw) != nil {
				t.Fatalf("%s: status %d body %.200q, want 200 from cell %s", tt.host, status, body, want)
			}
			if saw.Cell != want || saw.ViaEdge {
				t.Errorf("%s reached cell %q (through the catch-all and edge: %v), want %q through its own router", tt.host, saw.Cell, saw.ViaEdge, want)
			}
			if saw.Host != tt.host {
				t.Errorf("%s: cell saw Host %q; passHostHeader must keep it (cells answer 421 otherwise)", tt.host, saw.Host)
			}
			if saw.Path != "/api/settings/public?x=1" {
				t.Errorf("%s: cell saw path %q", tt.host, saw.Path)
			}
		}
	})

	t.Run("client forwarding headers are replaced", func(t *testing.T) {
		// Cells take the client IP (rate limits, audit) from the FIRST X-Forwarded-For entry of a
		// trusted proxy, so Traefik must not pass on what the client claims.
		status, _, body, err := s.get(t, host("acme"), "/", http.Header{
			"X-Forwarded-For":  {"203.0.113.66"},
			"X-Forwarded-Host": {"evil.example"},
			"X-Real-Ip":        {"203.0.113.66"},
		})
		if err != nil || status != http.StatusOK {
			t.Fatalf("status %d, err %v, body %.200q", status, err, body)
		}
		var saw cellSaw
		if err := json.Unmarshal([]byte(body), &saw); err != nil {
			t.Fatal(err)
		}
		if saw.ViaEdge || saw.XForwardedFor != "127.0.0.1" || saw.XRealIP != "127.0.0.1" || saw.XForwardedHost != host("acme") {
			t.Errorf("cell saw X-Forwarded-For %q, X-Real-Ip %q, X-Forwarded-Host %q; want 127.0.0.1, 127.0.0.1, %s",
				saw.XForwardedFor, saw.XRealIP, saw.XForwardedHost, host("acme"))
		}
	})

	t.Run("unknown hosts get the tenant-not-found page", func(t *testing.T) {
		for _, h := range []string{host("nobody"), "evil.example.com", host("initech-x")} {
			status, hdr, body, err := s.get(t, h, "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusNotFound || !strings.Contains(body, "Tenant not found") || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") ||
				hdr.Get(servedByHeader) != traefik.FallbackService {
				t.Errorf("%s: status %d, Content-Type %q, service %q, body %.300q; want 404 'Tenant not found' page from the fallback service",
					h, status, hdr.Get("Content-Type"), hdr.Get(servedByHeader), body)
			}
		}
		// API clients get the JSON error shape, not HTML.
		status, _, body, err := s.get(t, host("nobody"), "/api/chat/queue", nil)
		if err != nil || status != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
			t.Errorf("unknown host /api/: status %d err %v body %.200q; want 404 not_found JSON", status, err, body)
		}
		// The bare domain is the landing page, also through the catch-all.
		status, _, body, err = s.get(t, realDomain+":"+s.port, "/", nil)
		if err != nil || status != http.StatusOK || strings.Contains(body, "Tenant not found") {
			t.Errorf("bare domain: status %d err %v body %.200q; want 200 landing page", status, err, body)
		}
	})

	t.Run("suspended tenant gets the paused page", func(t *testing.T) {
		status, hdr, body, err := s.get(t, host("initech"), "/console", nil)
		if err != nil || status != http.StatusGone || !strings.Contains(body, "is suspended") || hdr.Get(servedByHeader) != traefik.PausedService {
			t.Errorf("initech /console: status %d err %v service %q body %.300q; want 410 paused page from the paused service", status, err, hdr.Get(servedByHeader), body)
		}
		status, hdr, body, err = s.get(t, host("initech"), "/api/chat/queue", nil)
		if err != nil || status != http.StatusGone || !strings.Contains(body, `"code":"suspended"`) || hdr.Get(servedByHeader) != traefik.PausedService {
			t.Errorf("initech /api/: status %d err %v service %q body %.200q; want 410 suspended JSON from the paused service", status, err, hdr.Get(servedByHeader), body)
		}
	})

	// WebSockets opened now are held silent past the idle and read timeouts, and across a reload.
	acmeWS, globexWS := s.dialWS(t, host("acme")), s.dialWS(t, host("globex"))
	echo(t, acmeWS, "acme", host("acme"), "hello")
	echo(t, globexWS, "globex", host("globex"), "hello")
	opened := time.Now()

	t.Run("file rewrite is picked up", func(t *testing.T) {
		if err := s.reachesCell(t, host("hooli"), "hooli"); err == nil {
			t.Fatal("hooli is routed before it was published")
		}
		updated := slices.Concat(routes, []traefik.Route{{TenantID: "t4hooli", Key: "hooli", Hosts: []string{"hooli." + realDomain}, Backend: hooli.URL, State: traefik.StateLive}})
		s.publish(t, updated)
		took := waitFor(t, 15*time.Second, "Traefik routes the tenant added to the file", func() error {
			return s.reachesCell(t, host("hooli"), "hooli")
		})
		t.Logf("new tenant routed %s after the atomic rewrite", took.Round(time.Millisecond))
		for key, cell := range map[string]string{"acme": "acme", "globex": "globex"} {
			if err := s.reachesCell(t, host(key), cell); err != nil {
				t.Errorf("after reload: %v", err)
			}
		}
		if status, hdr, _, err := s.get(t, host("initech"), "/", nil); err != nil || status != http.StatusGone || hdr.Get(servedByHeader) != traefik.PausedService {
			t.Errorf("after reload initech: status %d err %v service %q, want 410 from the paused service", status, err, hdr.Get(servedByHeader))
		}
		// No temporary file was left for the watcher to trip over.
		entries, _ := os.ReadDir(dynamicDir)
		if len(entries) != 1 {
			t.Errorf("dynamic dir holds %d entries, want only dynamic.yml", len(entries))
		}
	})

	t.Run("websocket survives idle and read timeouts", func(t *testing.T) {
		if wait := realHold - time.Since(opened); wait > 0 {
			time.Sleep(wait) // completely silent: no data, no ping
		}
		t.Logf("WebSockets silent for %s (idleTimeout %s, readTimeout %s)", time.Since(opened).Round(time.Millisecond), realIdleTimeout, realReadTimeout)
		echo(t, acmeWS, "acme", host("acme"), "still there after the idle period")
		echo(t, globexWS, "globex", host("globex"), "still there after the idle period")
		pingPong(t, acmeWS, "acme", host("acme"), "are-you-there")
		// A second silence, now past both timeouts counted from the last frame.
		time.Sleep(realHold)
		echo(t, acmeWS, "acme", host("acme"), "and after a second silence")
	})

	t.Run("idle keep-alive connections are closed by the idle timeout", func(t *testing.T) {
		// Counter-check that the short idleTimeout is in force: a raw keep-alive connection left
		// idle is closed by Traefik, so the WebSocket above survived it for a reason.
		conn, err := net.DialTimeout("tcp", s.tr.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host("acme"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(realIdleTimeout + 5*time.Second))
		n, err := conn.Read(make([]byte, 1))
		if err == nil || n != 0 {
			t.Fatalf("idle keep-alive connection: read %d bytes, err %v; want EOF", n, err)
		}
		if closed := time.Since(start); closed < realIdleTimeout-500*time.Millisecond || closed > realIdleTimeout+3*time.Second {
			t.Errorf("idle keep-alive connection closed after %s (err %v), want about %s", closed, err, realIdleTimeout)
		}
	})

	t.Run("access log never holds the query", func(t *testing.T) {
		if s.tr.AccessLog == "" {
			t.Fatal("traefik.yml has no accessLog section")
		}
		lines := func() (string, int) {
			b, _ := os.ReadFile(s.tr.AccessLog)
			return string(b), strings.Count(string(b), "\n")
		}
		_, before := lines()
		if _, _, _, err := s.get(t, host("acme"), "/api/auth/me?token=query-secret-token", nil); err != nil {
			t.Fatal(err)
		}
		// A WebSocket is logged when it ends; both were opened with ?token=ws-secret-token.
		acmeWS.Close()
		globexWS.Close()
		var log string
		waitFor(t, 10*time.Second, "access log lines for the request and both WebSockets", func() error {
			var n int
			log, n = lines()
			if n < before+3 {
				return fmt.Errorf("%d new lines, want 3; access log:\n%s", n-before, log)
			}
			return nil
		})
		if !strings.Contains(log, `"RouterName":"tenant-acme@file"`) || !strings.Contains(log, `"RouterName":"catch-all@file"`) {
			t.Errorf("access log lacks the tenant-acme and catch-all router names:\n%s", log)
		}
		for _, secret := range []string{"query-secret-token", "ws-secret-token"} {
			if strings.Contains(log, secret) {
				t.Errorf("access log holds %q:\n%s", secret, log)
			}
		}
		if strings.Contains(log, "RequestPath") {
			t.Errorf("access log holds RequestPath:\n%s", log)
		}
	})

	if t.Failed() {
		return
	}
	// Close idle connections before Traefik's graceful shutdown, which waits for open ones.
	s.client.CloseIdleConnections()
}
