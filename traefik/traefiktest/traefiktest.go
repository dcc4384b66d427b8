// Package traefiktest runs a real Traefik v3 process for tests, configured from Atende's static
// configuration (traefik/traefik.yml) with loopback ports and a file provider watching a
// directory the test writes atende/traefik.Build output into.
//
// The Traefik binary is not part of the atende module: `make traefik-bin` (traefik/build-traefik.sh)
// builds it from the Go module proxy into a cache directory outside the repository, and `make
// test` passes its path in the environment variable named by EnvBinary. A plain `go test ./...`
// without that variable skips the tests that need Traefik (see Binary).
package traefiktest

import (
	"bytes"
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

	"gopkg.in/yaml.v3"
)

// EnvBinary names the environment variable holding the path of the Traefik binary; the Makefile
// sets it for `make test`.
const EnvBinary = "ATENDE_TRAEFIK_BIN"

// MakeTarget is the Makefile target that builds the Traefik binary (once; it is cached).
const MakeTarget = "traefik-bin"

// EntryPoint is the name of the public entry point in traefik/traefik.yml, the one every router
// rendered by atende/traefik.Build with EntryPoints ["web"] listens on.
const EntryPoint = "web"

// Binary returns the path of the Traefik binary named by EnvBinary. When the variable is unset
// (a developer's plain `go test`) it skips the test with a message naming MakeTarget; when it is
// set but does not name an executable file it fails the test, because `make test` must never
// silently skip the real-Traefik checks.
func Binary(t testing.TB) string {
	t.Helper()
	path := os.Getenv(EnvBinary)
	if path == "" {
		t.Skipf("%s is not set: this test runs a real Traefik; run `make test`, or `make %s` and set %s to the path it prints", EnvBinary, MakeTarget, EnvBinary)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("%s=%s: %v (build it with `make %s`)", EnvBinary, path, err, MakeTarget)
	}
	if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable file (build it with `make %s`)", EnvBinary, path, MakeTarget)
	}
	return path
}

// Options configure Start.
type Options struct {
	// StaticConfig is the path of the static configuration to start from, normally
	// traefik/traefik.yml. Required. Start rewrites a copy of it as described on Start.
	StaticConfig string
	// DynamicDir is the directory the file provider watches. Empty means a new temporary
	// directory. Tests write atende/traefik.Build output into it with traefik.WriteFile.
	DynamicDir string
	// WebAddr is the host:port the public entry point EntryPoint listens on; empty means a free
	// 127.0.0.1 port. Set it when something must know the port before Traefik starts (the control
	// plane's ATENDE_PUBLIC_URL_PORT, for instance).
	WebAddr string
	// IdleTimeout, when positive, sets transport.respondingTimeouts.idleTimeout on every entry
	// point: how long Traefik keeps an idle keep-alive client connection open.
	IdleTimeout time.Duration
	// ReadTimeout, when positive, sets transport.respondingTimeouts.readTimeout on every entry
	// point: the longest Traefik waits to read a whole request.
	ReadTimeout time.Duration
}

// Traefik is a running Traefik process. Start stops it when the test ends.
type Traefik struct {
	// URL is the base URL of the public entry point EntryPoint, e.g. "http://127.0.0.1:41234".
	URL string
	// Addr is the host:port of EntryPoint, e.g. "127.0.0.1:41234".
	Addr string
	// DynamicDir is the directory the file provider watches.
	DynamicDir string
	// StaticConfig is the path of the rewritten static configuration Traefik was started with.
	StaticConfig string
	// AccessLog is the path of the access log file, or "" when the static configuration has no
	// accessLog section.
	AccessLog string

	cmd    *exec.Cmd
	output *lockedBuffer
	done   chan struct{}
}

// Start writes a test copy of opts.StaticConfig and starts Traefik with it, waiting (at most 30
// seconds) until its ping endpoint answers. The copy differs from the original only where a test
// must: every entry point listens on a free 127.0.0.1 port (EntryPoint on WebAddr when set; an
// internal "traefik" entry point serving ping is added when missing), the optional IdleTimeout
// and ReadTimeout are set on every entry point, the file provider watches DynamicDir, the access
// log (if any) goes to a file, and certificate resolvers are removed (no ACME from tests).
// Everything else — log and access-log formats and field rules, forwarded-headers policy, the
// absence of the API and dashboard — is exercised as written. Traefik's output is logged when
// the test fails.
func Start(t testing.TB, opts Options) *Traefik {
	t.Helper()
	bin := Binary(t)
	if opts.StaticConfig == "" {
		t.Fatal("traefiktest: Options.StaticConfig is required")
	}
	raw, err := os.ReadFile(opts.StaticConfig)
	if err != nil {
		t.Fatalf("traefiktest: read static configuration: %v", err)
	}
	var static map[string]any
	if err := yaml.Unmarshal(raw, &static); err != nil {
		t.Fatalf("traefiktest: parse %s: %v", opts.StaticConfig, err)
	}
	if static == nil {
		static = map[string]any{}
	}

	work := t.TempDir()
	tr := &Traefik{DynamicDir: opts.DynamicDir, output: &lockedBuffer{}, done: make(chan struct{})}
	if tr.DynamicDir == "" {
		tr.DynamicDir = filepath.Join(work, "dynamic")
	}
	if err := os.MkdirAll(tr.DynamicDir, 0o755); err != nil {
		t.Fatal(err)
	}

	entryPoints := section(static, "entryPoints")
	if _, ok := entryPoints[EntryPoint]; !ok {
		t.Fatalf("traefiktest: %s has no %q entry point", opts.StaticConfig, EntryPoint)
	}
	if _, ok := entryPoints["traefik"]; !ok {
		entryPoints["traefik"] = map[string]any{}
	}
	for name := range entryPoints {
		ep := section(entryPoints, name)
		addr := freeAddr(t)
		if name == EntryPoint {
			if opts.WebAddr != "" {
				addr = opts.WebAddr
			}
			tr.Addr, tr.URL = addr, "http://"+addr
		}
		ep["address"] = addr
		if opts.IdleTimeout > 0 || opts.ReadTimeout > 0 {
			timeouts := section(section(ep, "transport"), "respondingTimeouts")
			if opts.IdleTimeout > 0 {
				timeouts["idleTimeout"] = opts.IdleTimeout.String()
			}
			if opts.ReadTimeout > 0 {
				timeouts["readTimeout"] = opts.ReadTimeout.String()
			}
		}
	}
	pingAddr := section(entryPoints, "traefik")["address"].(string)
	if _, ok := static["ping"]; !ok {
		static["ping"] = map[string]any{}
	}
	file := section(section(static, "providers"), "file")
	delete(file, "filename")
	file["directory"] = tr.DynamicDir
	file["watch"] = true
	delete(static, "certificatesResolvers")
	if al, ok := static["accessLog"]; ok {
		m, _ := al.(map[string]any)
		if m == nil {
			m = map[string]any{}
			static["accessLog"] = m
		}
		tr.AccessLog = filepath.Join(work, "access.log")
		m["filePath"] = tr.AccessLog
	}

	out, err := yaml.Marshal(static)
	if err != nil {
		t.Fatal(err)
	}
	tr.StaticConfig = filepath.Join(work, "traefik.yml")
	if err := os.WriteFile(tr.StaticConfig, out, 0o644); err != nil {
		t.Fatal(err)
	}

	tr.cmd = exec.Command(bin, "--configFile="+tr.StaticConfig)
	tr.cmd.Dir = work
	tr.cmd.Stdout, tr.cmd.Stderr = tr.output, tr.output
	tr.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := tr.cmd.Start(); err != nil {
		t.Fatalf("traefiktest: start %s: %v", bin, err)
	}
	go func() { _ = tr.cmd.Wait(); close(tr.done) }()
	t.Cleanup(func() {
		tr.stop()
		if t.Failed() {
			t.Logf("traefik static configuration:\n%s\ntraefik output:\n%s", out, tr.Output())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://" + pingAddr + "/ping")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "OK" {
				break
			}
		}
		select {
		case <-tr.done:
			t.Fatalf("traefiktest: traefik exited before serving (%v); output:\n%s", tr.cmd.ProcessState, tr.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("traefiktest: traefik ping on %s not answering after 30s (last error %v)", pingAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return tr
}

// Output returns everything Traefik has written to stdout and stderr so far (its JSON log).
func (tr *Traefik) Output() string { return tr.output.String() }

// Exited reports whether the Traefik process has ended.
func (tr *Traefik) Exited() bool {
	select {
	case <-tr.done:
		return true
	default:
		return false
	}
}

// stop asks Traefik to shut down (SIGTERM) and kills it if it has not ended 15 seconds later.
func (tr *Traefik) stop() {
	if tr.cmd.Process == nil || tr.Exited() {
		return
	}
	_ = tr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tr.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-tr.cmd.Process.Pid, syscall.SIGKILL)
		<-tr.done
	}
}

// section returns m[key] as a map, replacing a missing or null value with a new empty map.
func section(m map[string]any, key string) map[string]any {
	if s, ok := m[key].(map[string]any); ok {
		return s
	}
	s := map[string]any{}
	m[key] = s
	return s
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes (Traefik's output) and reads (tests).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns the contents so far.
func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// String describes the running instance for test logs.
func (tr *Traefik) String() string {
	return fmt.Sprintf("traefik on %s (dynamic dir %s)", tr.URL, tr.DynamicDir)
}
