package traefik

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

var testOptions = Options{
	EntryPoints: []string{"web"},
	FallbackURL: "http://controlplane:8082",
	PausedURL:   "http://controlplane:8083",
}

func TestBuildGolden(t *testing.T) {
	withStore := testOptions
	withStore.ObjectStoreURL, withStore.ObjectStoreHost = "http://s3:9000", "s3.chat.example.com"
	onBareDomain := testOptions
	onBareDomain.ObjectStoreURL, onBareDomain.ObjectStoreHost, onBareDomain.ObjectStoreBucket = "http://127.0.0.1:7070", "localhost", "atende"
	tests := []struct {
		name   string
		routes []Route
		opts   *Options // nil: testOptions
	}{
		{name: "empty", routes: nil},
		{name: "two-live", routes: []Route{
			// Deliberately out of key order: output must be sorted.
			{TenantID: "t2zz", Key: "globex", Hosts: []string{"globex.localhost"}, Backend: "http://127.0.0.1:41002", State: StateLive},
			{TenantID: "t1aa", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: "http://127.0.0.1:41001", State: StateLive},
		}},
		{name: "one-suspended", routes: []Route{
			{TenantID: "t1aa", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: "http://127.0.0.1:41001", State: StateLive},
			{TenantID: "t3yy", Key: "initech", Hosts: []string{"initech.localhost"}, State: StateSuspended},
			// Not routed: skipped entirely, even though its key collides with a live one.
			{TenantID: "t0old", Key: "acme", Hosts: []string{"acme.localhost"}, State: "deleting"},
			{TenantID: "t4xx", Key: "hooli", Hosts: []string{"hooli.localhost"}, State: "creation-requested"},
		}},
		{name: "multi-host", routes: []Route{
			{TenantID: "t5ww", Key: "umbrella", Hosts: []string{"Umbrella.localhost", "chat.umbrella.example.com", "support.umbrella.example"}, Backend: "https://cell-t5ww:8443/", State: StateLive},
		}},
		{name: "object-store", opts: &withStore, routes: []Route{
			{TenantID: "t1aa", Key: "acme", Hosts: []string{"acme.chat.example.com"}, Backend: "http://cell-t1aa:8080", State: StateLive},
		}},
		{name: "object-store-bucket-path", opts: &onBareDomain, routes: []Route{
			{TenantID: "t1aa", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: "http://127.0.0.1:41001", State: StateLive},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions
			if tt.opts != nil {
				opts = *tt.opts
			}
			got, err := Build(tt.routes, opts)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}

			// Deterministic regardless of input order.
			reversed := make([]Route, len(tt.routes))
			for i, r := range tt.routes {
				reversed[len(tt.routes)-1-i] = r
			}
			again, err := Build(reversed, opts)
			if err != nil {
				t.Fatalf("Build reversed: %v", err)
			}
			if !bytes.Equal(got, again) {
				t.Errorf("output depends on input order")
			}
		})
	}
}

func TestBuildParsesBack(t *testing.T) {
	routes := []Route{
		{TenantID: "t1aa", Key: "acme", Hosts: []string{"acme.localhost", "chat.acme.example"}, Backend: "http://127.0.0.1:41001", State: StateLive},
		{TenantID: "t3yy", Key: "initech", Hosts: []string{"initech.localhost"}, State: StateSuspended},
	}
	out, err := Build(routes, Options{FallbackURL: "http://fallback:80", PausedURL: "http://paused:80"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("unmarshal: %v\n%s", err, out)
	}
	want := Config{HTTP: HTTP{
		Routers: map[string]Router{
			"catch-all":      {Rule: "PathPrefix(`/`)", Priority: 1, Service: "fallback"},
			"tenant-acme":    {Rule: "Host(`acme.localhost`) || Host(`chat.acme.example`)", Service: "cell-t1aa"},
			"tenant-initech": {Rule: "Host(`initech.localhost`)", Service: "paused"},
		},
		Services: map[string]Service{
			"cell-t1aa": {LoadBalancer: LoadBalancer{Servers: []Server{{URL: "http://127.0.0.1:41001"}}, PassHostHeader: true}},
			"fallback":  {LoadBalancer: LoadBalancer{Servers: []Server{{URL: "http://fallback:80"}}, PassHostHeader: true}},
			"paused":    {LoadBalancer: LoadBalancer{Servers: []Server{{URL: "http://paused:80"}}, PassHostHeader: true}},
		},
	}}
	if len(cfg.HTTP.Routers) != len(want.HTTP.Routers) || len(cfg.HTTP.Services) != len(want.HTTP.Services) {
		t.Fatalf("got %d routers / %d services, want %d / %d", len(cfg.HTTP.Routers), len(cfg.HTTP.Services), len(want.HTTP.Routers), len(want.HTTP.Services))
	}
	for name, w := range want.HTTP.Routers {
		g, ok := cfg.HTTP.Routers[name]
		if !ok || g.Rule != w.Rule || g.Priority != w.Priority || g.Service != w.Service || len(g.EntryPoints) != 0 {
			t.Errorf("router %s = %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	for name, w := range want.HTTP.Services {
		g, ok := cfg.HTTP.Services[name]
		if !ok || len(g.LoadBalancer.Servers) != 1 || g.LoadBalancer.Servers[0] != w.LoadBalancer.Servers[0] || !g.LoadBalancer.PassHostHeader {
			t.Errorf("service %s = %+v (present %v), want %+v", name, g, ok, w)
		}
	}
}

func TestBuildValidation(t *testing.T) {
	live := func(key, id, host, backend string) Route {
		return Route{TenantID: id, Key: key, Hosts: []string{host}, Backend: backend, State: StateLive}
	}
	ok := live("acme", "t1", "acme.localhost", "http://127.0.0.1:4000")
	tests := []struct {
		name   string
		routes []Route
		opts   *Options
		want   string // substring of the error message
	}{
		{name: "empty key", routes: []Route{live("", "t1", "a.localhost", "http://127.0.0.1:1")}, want: `route "" (tenant "t1"): empty key`},
		{name: "key not a label", routes: []Route{live("ac me", "t1", "a.localhost", "http://127.0.0.1:1")}, want: `route "ac me" (tenant "t1"): key is not a DNS label`},
		{name: "duplicate key", routes: []Route{ok, live("acme", "t2", "other.localhost", "http://127.0.0.1:2")}, want: `route "acme" (tenant "t2"): duplicate key`},
		{name: "empty tenant id", routes: []Route{live("acme", "", "a.localhost", "http://127.0.0.1:1")}, want: `route "acme" (tenant ""): empty tenant id`},
		{name: "tenant id with @", routes: []Route{live("acme", "t1@file", "a.localhost", "http://127.0.0.1:1")}, want: "tenant id may hold only"},
		{name: "duplicate tenant id", routes: []Route{ok, live("beta", "t1", "beta.localhost", "http://127.0.0.1:2")}, want: `route "beta" (tenant "t1"): tenant id already used by route "acme"`},
		{name: "no hosts", routes: []Route{{TenantID: "t1", Key: "acme", Backend: "http://127.0.0.1:1", State: StateLive}}, want: `route "acme" (tenant "t1"): no hosts`},
		{name: "duplicate host across routes", routes: []Route{ok, live("beta", "t2", "ACME.localhost", "http://127.0.0.1:2")}, want: `route "beta" (tenant "t2"): host "acme.localhost" already used by route "acme"`},
		{name: "duplicate host within route", routes: []Route{{TenantID: "t1", Key: "acme", Hosts: []string{"a.localhost", "a.localhost"}, Backend: "http://127.0.0.1:1", State: StateLive}}, want: `host "a.localhost" already used by route "acme"`},
		{name: "host with backtick", routes: []Route{live("acme", "t1", "acme`) || Host(`evil.com", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host with space", routes: []Route{live("acme", "t1", "acme .localhost", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host with port", routes: []Route{live("acme", "t1", "acme.localhost:8080", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host wildcard", routes: []Route{live("acme", "t1", "*.localhost", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host empty label", routes: []Route{live("acme", "t1", "acme..localhost", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host trailing dot", routes: []Route{live("acme", "t1", "acme.localhost.", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host label hyphen", routes: []Route{live("acme", "t1", "-acme.localhost", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host underscore", routes: []Route{live("acme", "t1", "ac_me.localhost", "http://127.0.0.1:1")}, want: "is not a valid DNS name"},
		{name: "host too long", routes: []Route{live("acme", "t1", strings.Repeat("a.", 127)+"ab", "http://127.0.0.1:1")}, want: "longer than 253"},
		{name: "host empty", routes: []Route{live("acme", "t1", "", "http://127.0.0.1:1")}, want: "empty host"},
		{name: "backend empty", routes: []Route{live("acme", "t1", "acme.localhost", "")}, want: `route "acme" (tenant "t1"): backend: empty URL`},
		{name: "backend no scheme", routes: []Route{live("acme", "t1", "acme.localhost", "127.0.0.1:4000")}, want: `route "acme" (tenant "t1"): backend:`},
		{name: "backend ftp", routes: []Route{live("acme", "t1", "acme.localhost", "ftp://127.0.0.1:4000")}, want: "scheme must be http or https"},
		{name: "backend path", routes: []Route{live("acme", "t1", "acme.localhost", "http://127.0.0.1:4000/api")}, want: "only scheme, host and port"},
		{name: "backend query", routes: []Route{live("acme", "t1", "acme.localhost", "http://127.0.0.1:4000?x=1")}, want: "only scheme, host and port"},
		{name: "backend userinfo", routes: []Route{live("acme", "t1", "acme.localhost", "http://u:p@127.0.0.1:4000")}, want: "user info"},
		{name: "backend no host", routes: []Route{live("acme", "t1", "acme.localhost", "http://:4000")}, want: "missing host"},
		{name: "backend backtick", routes: []Route{live("acme", "t1", "acme.localhost", "http://127.0.0.1:4000`")}, want: `route "acme" (tenant "t1"): backend:`},
		{name: "missing fallback", routes: []Route{ok}, opts: &Options{PausedURL: "http://p:1"}, want: "option FallbackURL: empty URL"},
		{name: "missing paused", routes: nil, opts: &Options{FallbackURL: "http://f:1"}, want: "option PausedURL: empty URL"},
		{name: "bad fallback", routes: nil, opts: &Options{FallbackURL: "fallback", PausedURL: "http://p:1"}, want: "option FallbackURL"},
		{name: "bad entry point", routes: nil, opts: &Options{EntryPoints: []string{"web@x"}, FallbackURL: "http://f:1", PausedURL: "http://p:1"}, want: "bad entry point name"},
		{name: "object store without URL", opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreHost: "s3.example.com"}, want: "option ObjectStoreURL: empty URL"},
		{name: "object store bad URL", opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreURL: "http://s3:9000/bucket", ObjectStoreHost: "s3.example.com"}, want: "option ObjectStoreURL"},
		{name: "object store without host", opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreURL: "http://s3:9000"}, want: "option ObjectStoreHost: empty host"},
		{name: "object store host injection", opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreURL: "http://s3:9000", ObjectStoreHost: "s3`) || Host(`evil.com"}, want: "option ObjectStoreHost"},
		{name: "object store bucket injection", opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreURL: "http://s3:9000", ObjectStoreHost: "localhost", ObjectStoreBucket: "a`) || PathPrefix(`/"}, want: "is not an S3 bucket name"},
		{name: "object store bucket uppercase", opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreURL: "http://s3:9000", ObjectStoreHost: "localhost", ObjectStoreBucket: "Atende"}, want: "is not an S3 bucket name"},
		{name: "tenant on the object store host", routes: []Route{live("acme", "t1", "S3.example.com", "http://127.0.0.1:1")},
			opts: &Options{FallbackURL: "http://f:1", PausedURL: "http://p:1", ObjectStoreURL: "http://s3:9000", ObjectStoreHost: "s3.example.com"}, want: `host "s3.example.com" already used by route "object store"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions
			if tt.opts != nil {
				opts = *tt.opts
			}
			out, err := Build(tt.routes, opts)
			if err == nil {
				t.Fatalf("Build succeeded, want error containing %q; output:\n%s", tt.want, out)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestBuildSuspendedNeedsNoBackend(t *testing.T) {
	out, err := Build([]Route{{TenantID: "t1", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: "not a url", State: StateSuspended}}, testOptions)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if bytes.Contains(out, []byte("cell-t1")) || bytes.Contains(out, []byte("not a url")) {
		t.Errorf("suspended tenant must not get a cell service:\n%s", out)
	}
}

func TestCheckHost(t *testing.T) {
	tests := []struct {
		host string
		ok   bool
	}{
		{"localhost", true},
		{"acme.localhost", true},
		{"ACME.Example.COM", true},
		{"a-b.c1.example", true},
		{"127.0.0.1", true},
		{strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a", 64) + ".com", false},
		{"", false},
		{"a b", false},
		{"a`b", false},
		{`a"b`, false},
		{"a.b-", false},
		{"[::1]", false},
		{"acme.localhost:80", false},
		{"ünicode.example", false},
	}
	for _, tt := range tests {
		if err := CheckHost(tt.host); (err == nil) != tt.ok {
			t.Errorf("CheckHost(%q) = %v, want ok=%v", tt.host, err, tt.ok)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "traefik", "dynamic") // does not exist yet
	path := filepath.Join(dir, "atende.yml")

	first, err := Build(nil, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, first); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	assertFile(t, path, first)

	// Replace concurrently with readers: every read sees one complete version, never a mix or a
	// truncated file.
	routes := []Route{{TenantID: "t1", Key: "acme", Hosts: []string{"acme.localhost"}, Backend: "http://127.0.0.1:1", State: StateLive}}
	second, err := Build(routes, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat(second, 2000) // make a torn write observable if writes were not atomic
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	var readMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := os.ReadFile(path)
			if err == nil && !bytes.Equal(got, first) && !bytes.Equal(got, big) {
				err = errors.New("read a partial file")
			}
			if err != nil {
				readMu.Lock()
				readErr = err
				readMu.Unlock()
				return
			}
		}
	}()
	for i := 0; i < 50; i++ {
		data := big
		if i%2 == 1 {
			data = first
		}
		if err := WriteFile(path, data); err != nil {
			t.Fatalf("WriteFile #%d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("concurrent reader: %v", readErr)
	}
	assertFile(t, path, first)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "atende.yml" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only atende.yml (no temporary files left)", names)
	}
}

func TestWriteFileErrorLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// The target is an existing non-empty directory: rename must fail.
	target := filepath.Join(dir, "atende.yml")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("x")); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("temporary file left behind: %d entries", len(entries))
	}
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s content mismatch", path)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o644 {
		t.Errorf("%s mode = %o, want 644", path, mode)
	}
	var cfg Config
	if err := yaml.Unmarshal(got, &cfg); err != nil {
		t.Errorf("%s does not parse: %v", path, err)
	}
}
