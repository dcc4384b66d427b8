package edge

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"atende/traefik"
)

// seen is what a test backend reports about the request it received.
type seen struct {
	Backend        string `json:"backend"`
	Host           string `json:"host"`
	Path           string `json:"path"`
	XForwardedFor  string `json:"xff"`
	XForwardedHost string `json:"xfh"`
	XForwardedProt string `json:"xfp"`
	XRealIP        string `json:"xri"`
	Forwarded      string `json:"forwarded"`
}

// newBackend starts a cell stand-in on loopback that answers with what it saw, echoes WebSocket
// messages on /ws and streams on /stream until release is closed.
func newBackend(t *testing.T, name string, release <-chan struct{}) *httptest.Server {
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
			reply := fmt.Sprintf("%s:%s:%s", name, r.Host, msg)
			if err := conn.WriteMessage(typ, []byte(reply)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{
			Backend:        name,
			Host:           r.Host,
			Path:           r.URL.RequestURI(),
			XForwardedFor:  strings.Join(r.Header.Values("X-Forwarded-For"), ","),
			XForwardedHost: strings.Join(r.Header.Values("X-Forwarded-Host"), ","),
			XForwardedProt: strings.Join(r.Header.Values("X-Forwarded-Proto"), ","),
			XRealIP:        strings.Join(r.Header.Values("X-Real-Ip"), ","),
			Forwarded:      r.Header.Get("Forwarded"),
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// page returns a handler that writes body with status, as a platform page handler does.
func page(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

type fixture struct {
	router *Router
	edge   *httptest.Server
	a, b   *httptest.Server
	logs   *strings.Builder
}

func newFixture(t *testing.T, release <-chan struct{}) *fixture {
	t.Helper()
	logs := &strings.Builder{}
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{w: logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := &fixture{
		a:    newBackend(t, "a", release),
		b:    newBackend(t, "b", release),
		logs: logs,
	}
	f.router = New(Options{
		Domain:   "localhost",
		Landing:  page(http.StatusOK, "landing"),
		NotFound: page(http.StatusNotFound, "tenant not found"),
		Paused:   page(http.StatusGone, "paused"),
		Logger:   logger,
	})
	f.router.SetRoutes([]traefik.Route{
		{TenantID: "t1", Key: "acme", Hosts: []string{"acme.localhost", "Chat.Acme.Example"}, Backend: f.a.URL, State: traefik.StateLive},
		{TenantID: "t2", Key: "globex", Hosts: []string{"globex.localhost"}, Backend: f.b.URL, State: traefik.StateLive},
		{TenantID: "t3", Key: "initech", Hosts: []string{"initech.localhost"}, State: traefik.StateSuspended},
		{TenantID: "t4", Key: "hooli", Hosts: []string{"hooli.localhost"}, Backend: f.a.URL, State: "creation-requested"},
	})
	f.edge = httptest.NewServer(f.router)
	t.Cleanup(f.edge.Close)
	return f
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// get sends GET path to the edge with the given Host header and extra headers.
func (f *fixture) get(t *testing.T, host, path string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.edge.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := f.edge.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestRouting(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name        string
		host        string
		wantStatus  int
		wantBackend string // "" when the answer is a page
		wantBody    string // for pages
	}{
		{name: "tenant a", host: "acme.localhost", wantStatus: 200, wantBackend: "a"},
		{name: "tenant b", host: "globex.localhost", wantStatus: 200, wantBackend: "b"},
		{name: "host with port", host: "acme.localhost:8080", wantStatus: 200, wantBackend: "a"},
		{name: "mixed case host", host: "GLOBEX.LocalHost:8080", wantStatus: 200, wantBackend: "b"},
		{name: "second host of a tenant", host: "chat.acme.example", wantStatus: 200, wantBackend: "a"},
		{name: "trailing dot", host: "acme.localhost.:8080", wantStatus: 200, wantBackend: "a"},
		{name: "unknown subdomain", host: "nope.localhost:8080", wantStatus: 404, wantBody: "tenant not found"},
		{name: "foreign domain", host: "evil.example.com", wantStatus: 404, wantBody: "tenant not found"},
		{name: "not routed state", host: "hooli.localhost:8080", wantStatus: 404, wantBody: "tenant not found"},
		{name: "bare domain", host: "localhost", wantStatus: 200, wantBody: "landing"},
		{name: "bare domain with port", host: "localhost:8080", wantStatus: 200, wantBody: "landing"},
		{name: "loopback ip", host: "127.0.0.1:8080", wantStatus: 200, wantBody: "landing"},
		{name: "loopback ipv6", host: "[::1]:8080", wantStatus: 200, wantBody: "landing"},
		{name: "suspended", host: "initech.localhost:8080", wantStatus: 410, wantBody: "paused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := f.get(t, tt.host, "/api/settings/public?x=1", nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", status, tt.wantStatus, body)
			}
			if tt.wantBackend == "" {
				if body != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
				return
			}
			var s seen
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatalf("backend body %q: %v", body, err)
			}
			if s.Backend != tt.wantBackend {
				t.Errorf("served by backend %q, want %q", s.Backend, tt.wantBackend)
			}
			if s.Host != tt.host {
				t.Errorf("backend saw Host %q, want the original %q", s.Host, tt.host)
			}
			if s.Path != "/api/settings/public?x=1" {
				t.Errorf("backend saw path %q", s.Path)
			}
		})
	}
}

func TestForwardedHeadersReplaced(t *testing.T) {
	f := newFixture(t, nil)
	spoofed := http.Header{
		"X-Forwarded-For":   {"6.6.6.6", "7.7.7.7"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"X-Real-Ip":         {"6.6.6.6"},
		"Forwarded":         {"for=6.6.6.6"},
	}
	status, _, body := f.get(t, "acme.localhost:8080", "/", spoofed)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	want := seen{Backend: "a", Host: "acme.localhost:8080", Path: "/", XForwardedFor: "127.0.0.1",
		XForwardedHost: "acme.localhost:8080", XForwardedProt: "http", XRealIP: "127.0.0.1"}
	if s != want {
		t.Errorf("backend saw %+v\nwant %+v", s, want)
	}
}

func TestWebSocketThroughRouter(t *testing.T) {
	f := newFixture(t, nil)
	wsURL := "ws" + strings.TrimPrefix(f.edge.URL, "http") + "/ws?ticket=abc"
	for _, tc := range []struct{ host, backend string }{
		{"acme.localhost:8080", "a"},
		{"globex.localhost:8080", "b"},
	} {
		conn, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Host": {tc.host}})
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("dial via %s: %v (status %d)", tc.host, err, status)
		}
		for i := 0; i < 3; i++ {
			msg := fmt.Sprintf(`{"type":"ping","ref":"%d"}`, i)
			if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, got, err := conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.backend + ":" + tc.host + ":" + msg; string(got) != want {
				t.Errorf("echo = %q, want %q", got, want)
			}
		}
		_ = conn.Close()
	}

	// An unknown host must not be upgraded.
	_, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Host": {"nope.localhost:8080"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("dial unknown host: err=%v resp=%v, want a 404 handshake failure", err, resp)
	}
}

func TestStreamingIsFlushed(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, release)
	defer close(release)
	req, err := http.NewRequest(http.MethodGet, f.edge.URL+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "acme.localhost:8080"
	resp, err := f.edge.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		if line != "first\n" {
			t.Errorf("first chunk = %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first chunk not flushed through the router while the backend is still writing")
	}
}

func TestBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()

	f := newFixture(t, nil)
	f.router.SetRoutes([]traefik.Route{{TenantID: "t9", Key: "down", Hosts: []string{"down.localhost"}, Backend: dead, State: traefik.StateLive}})
	status, header, body := f.get(t, "down.localhost:8080", "/api/auth/me", nil)
	if status != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", status)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var eb struct {
		Error struct{ Code, Message, RequestID string }
	}
	if err := json.Unmarshal([]byte(body), &eb); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if eb.Error.Code != "internal" || eb.Error.Message != "cell unavailable" || eb.Error.RequestID == "" {
		t.Errorf("error body = %+v", eb.Error)
	}
	if eb.Error.RequestID != header.Get("X-Request-Id") {
		t.Errorf("requestId %q differs from X-Request-Id %q", eb.Error.RequestID, header.Get("X-Request-Id"))
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(dead, "http://"))
	if strings.Contains(body, "127.0.0.1") || strings.Contains(body, port) {
		t.Errorf("body leaks the backend address: %s", body)
	}
	if !strings.Contains(f.logs.String(), eb.Error.RequestID) {
		t.Errorf("failure not logged with its requestId; logs:\n%s", f.logs.String())
	}
}

func TestDefaultPages(t *testing.T) {
	r := New(Options{})
	r.SetRoutes([]traefik.Route{{TenantID: "t3", Key: "initech", Hosts: []string{"initech.localhost"}, State: traefik.StateSuspended}})
	tests := []struct {
		host     string
		status   int
		wantCode string
	}{
		{"localhost:8080", 200, ""},
		{"nope.localhost", 404, "not_found"},
		{"initech.localhost", 410, "suspended"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = tt.host
		r.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("%s: status = %d, want %d", tt.host, rec.Code, tt.status)
		}
		if tt.wantCode != "" && !strings.Contains(rec.Body.String(), `"code":"`+tt.wantCode+`"`) {
			t.Errorf("%s: body = %s, want code %s", tt.host, rec.Body.String(), tt.wantCode)
		}
	}
}

func TestPageHandlerKeepsExplicitErrorStatus(t *testing.T) {
	r := New(Options{NotFound: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "nope.localhost"
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want the handler's explicit 503", rec.Code)
	}
}

func TestSetRoutesLenient(t *testing.T) {
	f := newFixture(t, nil)
	f.router.SetRoutes([]traefik.Route{
		{TenantID: "t1", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: "not-a-url", State: traefik.StateLive},
		{TenantID: "t2", Key: "zeta", Hosts: []string{"shared.localhost"}, Backend: f.b.URL, State: traefik.StateLive},
		{TenantID: "t3", Key: "beta", Hosts: []string{"shared.localhost"}, Backend: f.a.URL, State: traefik.StateLive},
	})
	if status, _, _ := f.get(t, "acme.localhost", "/", nil); status != 404 {
		t.Errorf("route with bad backend: status %d, want 404", status)
	}
	_, _, body := f.get(t, "shared.localhost", "/", nil)
	if !strings.Contains(body, `"backend":"a"`) {
		t.Errorf("host conflict: want the smaller key (beta → a) to win, got %s", body)
	}
}

func TestSetRoutesConcurrentSwap(t *testing.T) {
	f := newFixture(t, nil)
	tableFor := func(backend string) []traefik.Route {
		return []traefik.Route{
			{TenantID: "t1", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: backend, State: traefik.StateLive},
			{TenantID: "t2", Key: "globex", Hosts: []string{"globex.localhost"}, Backend: f.b.URL, State: traefik.StateLive},
		}
	}
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				swapped <- n
				return
			default:
			}
			if n%2 == 0 {
				f.router.SetRoutes(tableFor(f.a.URL))
			} else {
				f.router.SetRoutes(tableFor(f.b.URL))
			}
			n++
		}
	}()

	const workers, perWorker = 4, 60
	errs := make(chan error, workers)
	seenBackends := make(chan string, workers*perWorker)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			host := "acme.localhost:8080"
			if w%2 == 1 {
				host = "globex.localhost:8080"
			}
			for i := 0; i < perWorker; i++ {
				req, _ := http.NewRequest(http.MethodGet, f.edge.URL+"/", nil)
				req.Host = host
				resp, err := f.edge.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				var s seen
				err = json.NewDecoder(resp.Body).Decode(&s)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					errs <- fmt.Errorf("%s: status %d, decode %v", host, resp.StatusCode, err)
					return
				}
				if strings.HasPrefix(host, "globex") && s.Backend != "b" {
					errs <- fmt.Errorf("globex served by %q during swaps", s.Backend)
					return
				}
				seenBackends <- s.Backend
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	swaps := <-swapped
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if swaps < 2 {
		t.Errorf("only %d swaps happened during the test", swaps)
	}
	close(seenBackends)
	n := 0
	for range seenBackends {
		n++
	}
	if n != workers*perWorker {
		t.Errorf("%d successful requests, want %d", n, workers*perWorker)
	}
}
