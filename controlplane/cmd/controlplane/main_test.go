package main

import (
	"bufio"
	"bytes"
	"context"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/s3bucket"
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
		{name: "docker driver needs no cell binary", env: map[string]string{envCellBin: filepath.Join(t.TempDir(), "nope"), envDriver: "docker"},
			check: func(t *testing.T, c config) {
				if c.Driver != driverDocker || c.CellImage != "atende/cell:dev" {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "unknown driver", env: map[string]string{envCellBin: exe, envDriver: "kubernetes"}, errs: []string{envDriver}},
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

func TestObjectStoreRoute(t *testing.T) {
	for _, tc := range []struct {
		public, host, bucket string
		ok                   bool
	}{
		{"http://localhost:8080", "localhost", "atende", true},
		{"http://LOCALHOST", "localhost", "atende", true},
		{"https://s3.chat.example.com", "", "", false},
		{"http://s3.localhost:8080", "s3.localhost", "", true},
		{"http://127.0.0.1:9000", "", "", false},
		{"http://evil-localhost:8080", "", "", false},
		{"http://localhost:8080/prefix", "", "", false},
		{"ftp://localhost", "", "", false},
	} {
		host, bucket, ok := objectStoreRoute(tc.public, "localhost", "atende")
		if host != tc.host || bucket != tc.bucket || ok != tc.ok {
			t.Errorf("%s: %q %q %v, want %q %q %v", tc.public, host, bucket, ok, tc.host, tc.bucket, tc.ok)
		}
	}
	if host, bucket, ok := objectStoreRoute("https://s3.chat.example.com", "chat.example.com", "atende"); host != "s3.chat.example.com" || bucket != "" || !ok {
		t.Errorf("production endpoint: %q %q %v", host, bucket, ok)
	}
}

// checkCellObjectStore checks, on a running local stack, that the cell with pid was started
// with its tenant's own S3 credentials (not the root's, which are in the data dir) and a public
// S3 endpoint on the edge, and that a presigned PUT and GET through that endpoint work and carry
// nosniff.
func checkCellObjectStore(t *testing.T, data string, pid, edgePort int) {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatalf("cell environment: %v", err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(raw), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var root s3Credentials
	if b, err := os.ReadFile(filepath.Join(data, s3CredentialsFile)); err != nil || json.Unmarshal(b, &root) != nil {
		t.Fatalf("root credentials: %v", err)
	}
	access, secret, tenantID := env[cell.EnvS3AccessKey], env[cell.EnvS3SecretKey], env[cell.EnvTenantID]
	if access != "tenant-"+tenantID || access == root.AccessKey || secret == "" || secret == root.SecretKey {
		t.Fatalf("the cell of tenant %s got S3 credentials %q, want its own", tenantID, access)
	}
	public := fmt.Sprintf("http://localhost:%d", edgePort)
	if env[cell.EnvS3PublicEndpoint] != public {
		t.Fatalf("public S3 endpoint %q, want the edge %s", env[cell.EnvS3PublicEndpoint], public)
	}
	ctx := context.Background()
	pre := s3.NewPresignClient(s3bucket.NewClient(public, env[cell.EnvS3Region], access, secret))
	key := controlplane.S3Prefix(tenantID) + "c/probe/1"
	body := []byte("\x89PNG\r\n\x1a\nprobe")
	put, err := pre.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env[cell.EnvS3Bucket]), Key: aws.String(key),
		ContentType: aws.String("image/png"), ContentLength: aws.Int64(int64(len(body))), IfNoneMatch: aws.String("*")}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	get, err := pre.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env[cell.EnvS3Bucket]), Key: aws.String(key),
		ResponseContentDisposition: aws.String(`attachment; filename="probe.png"`)}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		method, url string
		header      http.Header
		body        []byte
	}{{http.MethodPut, put.URL, put.SignedHeader, body}, {http.MethodGet, get.URL, nil, nil}} {
		req, _ := http.NewRequest(r.method, r.url, bytes.NewReader(r.body))
		for k, vs := range r.header {
			if k != "Host" && k != "Content-Length" {
				req.Header[k] = vs
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s through the edge: %d %s, nosniff %q", r.method, resp.StatusCode, got, resp.Header.Get("X-Content-Type-Options"))
		}
		if r.method == http.MethodGet && (!bytes.Equal(got, body) || resp.Header.Get("Content-Disposition") != `attachment; filename="probe.png"`) {
			t.Fatalf("GET through the edge: %q, disposition %q", got, resp.Header.Get("Content-Disposition"))
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
	if yml, err := os.ReadFile(filepath.Join(data, "traefik", "dynamic.yml")); err != nil || !strings.Contains(string(yml), "Host(`dev.localhost`)") ||
		!strings.Contains(string(yml), "X-Content-Type-Options: nosniff") {
		t.Fatalf("traefik config: %v\n%s", err, yml)
	}
	checkCellObjectStore(t, data, pid, edgePort)

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
