package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "cell")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{envCellBin: exe}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		errs  []string // substrings of the error; none means valid
		check func(t *testing.T, c config)
	}{
		{name: "defaults", env: base, check: func(t *testing.T, c config) {
			if c.APIAddr != "127.0.0.1:8081" || c.EdgeAddr != "127.0.0.1:8080" || c.Domain != "localhost" || c.S3Bucket != "atende" ||
				!c.SeedDev || c.CellPresignTTL != 5*time.Minute || c.MongoURI != "" || c.PublicURLPort != 0 || !filepath.IsAbs(c.DataDir) {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "env and flags", env: map[string]string{envCellBin: exe, envDomain: "Example.COM.", envSeedDev: "false", envPublicURLPort: "443", envCellPresignTTL: "30s"},
			args: []string{"-api-addr", "0.0.0.0:9000"}, check: func(t *testing.T, c config) {
				if c.Domain != "example.com" || c.SeedDev || c.PublicURLPort != 443 || c.CellPresignTTL != 30*time.Second || c.APIAddr != "0.0.0.0:9000" {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "invalid values", env: map[string]string{envCellBin: exe, envAPIAddr: "nope", envDomain: "a b", envPublicURLPort: "99999",
			envCellPresignTTL: "10m", envSeedDev: "maybe", envLogLevel: "loud", envS3Endpoint: "http://s3"},
			errs: []string{envAPIAddr, envDomain, envPublicURLPort, envCellPresignTTL, envSeedDev, envLogLevel, envS3AccessKey}},
		{name: "missing cell binary", env: map[string]string{envCellBin: filepath.Join(t.TempDir(), "nope")}, errs: []string{"no cell executable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, func(k string) string { return tc.env[k] })
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			for _, want := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not mention %s", err, want)
				}
			}
		})
	}
}

func TestCORSOrigins(t *testing.T) {
	for _, tc := range []struct {
		port int
		want []string
	}{
		{8080, []string{"http://*.localhost:8080", "https://*.localhost:8080"}},
		{80, []string{"http://*.localhost", "https://*.localhost:80"}},
		{443, []string{"http://*.localhost:443", "https://*.localhost"}},
	} {
		if got := corsOrigins("localhost", tc.port); !slices.Equal(got, tc.want) {
			t.Errorf("port %d: %v, want %v", tc.port, got, tc.want)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestLocalMode runs the real binary with the process driver's fake cell: it must print
// "atende: ready", write its state files with mode 0600, seed a live dev tenant routed by the
// edge, and stop every cell on SIGTERM.
func TestLocalMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the control plane")
	}
	bin := t.TempDir()
	for pkg, out := range map[string]string{".": "controlplane", "../../process/testdata/fakecell": "cell"} {
		if b, err := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	data := t.TempDir()
	apiPort, edgePort := freePort(t), freePort(t)
	cmd := exec.Command(filepath.Join(bin, "controlplane"))
	cmd.Env = append(os.Environ(), "ATENDE_DATA_DIR="+data, fmt.Sprintf("ATENDE_API_ADDR=127.0.0.1:%d", apiPort),
		fmt.Sprintf("ATENDE_EDGE_ADDR=127.0.0.1:%d", edgePort), "ATENDE_LOG_LEVEL=warn")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := make(chan string, 1)
	go func() {
		var out strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if sc.Text() == "atende: ready" {
				ready <- out.String()
			}
		}
	}()
	var banner string
	select {
	case banner = <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("not ready; stderr:\n%s", stderr.String())
	}
	for _, want := range []string{"admin@dev.localhost", "agent@dev.localhost", fmt.Sprintf("http://dev.localhost:%d/console", edgePort), "superadmin.token"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	for _, f := range []string{keyFile, tokenFile, s3CredentialsFile, devCredentialsFile, runtimeFile} {
		fi, err := os.Stat(filepath.Join(data, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", f, err, fi.Mode())
		}
	}
	var rt runtimeInfo
	b, _ := os.ReadFile(filepath.Join(data, runtimeFile))
	if err := json.Unmarshal(b, &rt); err != nil || rt.API != fmt.Sprintf("127.0.0.1:%d", apiPort) || rt.Mongo == "" || rt.S3 == "" {
		t.Fatalf("runtime.json %s", b)
	}
	var dev devCredentials
	b, _ = os.ReadFile(filepath.Join(data, devCredentialsFile))
	if err := json.Unmarshal(b, &dev); err != nil || dev.Tenant != "dev" || len(dev.Admin.Password) != 20 || len(dev.Agent.Password) != 20 {
		t.Fatalf("dev-credentials.json %s", b)
	}
	// The dev tenant is live and routed: the fake cell answers its pid on /healthz.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", edgePort), nil)
	req.Host = fmt.Sprintf("dev.localhost:%d", edgePort)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var pid int
	if _, err := fmt.Sscan(string(body), &pid); resp.StatusCode != 200 || err != nil {
		t.Fatalf("dev host: %d %s", resp.StatusCode, body)
	}
	if yml, err := os.ReadFile(filepath.Join(data, "traefik", "dynamic.yml")); err != nil || !strings.Contains(string(yml), "Host(`dev.localhost`)") {
		t.Fatalf("traefik config: %v\n%s", err, yml)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("cell %d survived the control plane", pid)
	}
}
