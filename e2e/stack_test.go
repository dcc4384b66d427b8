// Package e2e runs the real local stack — bin/controlplane with its embedded FerretDB and
// versitygw, cells as child processes, the dev edge router — on free loopback ports, and talks to
// it only through its public surfaces: the control-plane API and tenant hosts on the edge.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries built once for the package.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "atende-e2e-bin-")
	if err != nil {
		panic(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../controlplane/cmd/controlplane", "../cell/cmd/cell", "../ctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Println("e2e: building binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stack is one running control plane with its edge.
type stack struct {
	t       testing.TB
	dataDir string
	api     string // http://127.0.0.1:port
	edge    string // http://127.0.0.1:port
	port    string // edge port, part of tenant hosts
	token   string // super-admin token
	cmd     *exec.Cmd
	logs    *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// startStack starts bin/controlplane with a fresh data dir and waits for "atende: ready".
func startStack(t testing.TB, extraEnv ...string) *stack {
	t.Helper()
	s := &stack{t: t, dataDir: t.TempDir(), logs: &lockedBuffer{}}
	apiPort, edgePort := freePort(t), freePort(t)
	s.api, s.edge, s.port = "http://127.0.0.1:"+apiPort, "http://127.0.0.1:"+edgePort, edgePort
	s.cmd = exec.Command(filepath.Join(binDir, "controlplane"))
	s.cmd.Env = append(os.Environ(),
		"ATENDE_DATA_DIR="+s.dataDir, "ATENDE_API_ADDR=127.0.0.1:"+apiPort, "ATENDE_EDGE_ADDR=127.0.0.1:"+edgePort,
		"ATENDE_CELL_BIN="+filepath.Join(binDir, "cell"), "ATENDE_LOG_LEVEL=warn")
	s.cmd.Env = append(s.cmd.Env, extraEnv...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
			if strings.Contains(line, "atende: ready") {
				close(ready)
			}
		}
	}()
	t.Cleanup(s.stop)
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("control plane not ready after 60s; output:\n%s", s.logs.String())
	}
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "superadmin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(tok))
	return s
}

func (s *stack) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if s.t.Failed() {
		s.t.Logf("control plane output:\n%s", s.logs.String())
	}
}

// tenant is a created tenant as the API answers it.
type tenant struct {
	ID    string `json:"id"`
	Key   string `json:"key"`
	URL   string `json:"url"`
	State string `json:"state"`
	Admin struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	} `json:"admin"`
}

// host returns the tenant's Host header value on this stack's edge.
func (s *stack) host(key string) string { return key + ".localhost:" + s.port }

// createTenant creates a tenant (enterprise plan: no user limit, the tests create 50 agents)
// through the control-plane API and waits until it is live. It
// returns the tenant and the time from the 202 to the first 200 on the tenant's host.
func (s *stack) createTenant(key string) (tenant, time.Duration) {
	s.t.Helper()
	return s.createTenantOnPlan(key, "enterprise")
}

// createTenantOnPlan is createTenant with the plan ("free", "pro" or "enterprise") chosen.
func (s *stack) createTenantOnPlan(key, plan string) (tenant, time.Duration) {
	s.t.Helper()
	var tn tenant
	st, body := s.cp("POST", "/api/tenants", map[string]any{"key": key, "name": strings.ToUpper(key[:1]) + key[1:], "adminEmail": "admin@" + key + ".test", "plan": plan}, &tn)
	if st != 202 {
		s.t.Fatalf("create %s: %d %s", key, st, body)
	}
	accepted := time.Now()
	deadline := accepted.Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", s.edge+"/api/settings/public", nil)
		req.Host = s.host(key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("tenant %s not serving 30s after create", key)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(accepted)
	for {
		var got tenant
		s.cp("GET", "/api/tenants/"+tn.ID, nil, &got)
		if got.State == "live" {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("tenant %s serves but is still %q", key, got.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return tn, took
}

// cp calls the control-plane API with the super-admin token.
func (s *stack) cp(method, path string, body, out any) (int, string) {
	s.t.Helper()
	return call(s.t, method, s.api+path, "", s.token, body, out)
}

// on calls a tenant's host through the edge.
func (s *stack) on(key, method, path, token string, body, out any) (int, string) {
	s.t.Helper()
	return call(s.t, method, s.edge+path, s.host(key), token, body, out)
}

func call(t testing.TB, method, url, host, token string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode, string(data)
}
