package templates

import (
	"bytes"
	"flag"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current templates")

// fixedData is the Data every golden file is rendered with.
var fixedData = Data{
	TenantID:   "t_01HZX3K9ABCDEF",
	TenantKey:  "acme",
	TenantName: "Acme & Co",
	PublicURL:  "http://acme.localhost:8080",
	Domain:     "localhost",
	EdgeURL:    "http://localhost:8080",
	Host:       "acme.localhost:8080",
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		page   string
		status int
		msg    string
	}{
		{page: "landing.html"},
		{page: "notfound.html", status: http.StatusNotFound},
		{page: "paused.html", status: http.StatusGone, msg: "Suspended by the platform administrator."},
		{page: "console.html"},
		{page: "widget-demo.html"},
		{page: "admin.html"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.page] = true
		t.Run(tt.page, func(t *testing.T) {
			d := fixedData
			d.Status, d.Message = tt.status, tt.msg
			var buf bytes.Buffer
			if err := Render(&buf, tt.page, d); err != nil {
				t.Fatalf("Render(%q): %v", tt.page, err)
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(tt.page, ".html")+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test ./templates/ -update to create it): %v", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s differs from %s (run with -update if the change is intended)\n--- got ---\n%s", tt.page, golden, buf.String())
			}
		})
	}
	for _, name := range Names() {
		if !seen[name] {
			t.Errorf("page %q has no golden test", name)
		}
	}
}

func TestRenderPageContent(t *testing.T) {
	tests := []struct {
		page string
		want []string
	}{
		{"landing.html", []string{
			`bin/ctl tenant create acme --name "Acme" --admin-email admin@acme.test`,
			`http://&lt;key&gt;.localhost:8080`, `href="http://dev.localhost:8080/console"`,
		}},
		{"notfound.html", []string{"Tenant not found", "acme.localhost:8080"}},
		{"paused.html", []string{"suspended"}},
		{"console.html", []string{
			`data-testid="login-email"`, `data-testid="login-password"`, `data-testid="login-submit"`,
			`data-testid="queue"`, `data-testid="my-chats"`, `data-testid="chat-messages"`,
			`data-testid="chat-input"`, `data-testid="chat-send"`, `data-testid="chat-file"`,
			`data-testid="resolve"`, `data-testid="agent-status"`,
			`<script src="/static/auth.js" defer></script>`, `<script src="/static/console.js" defer></script>`,
		}},
		{"admin.html", []string{
			`data-testid="login-email"`, `data-testid="login-password"`, `data-testid="login-submit"`,
			`data-testid="agents"`, `data-testid="agent-email"`, `data-testid="agent-name"`,
			`data-testid="agent-add"`, `data-testid="agent-password-shown"`,
			`&lt;script src="http://acme.localhost:8080/widget.js" defer&gt;&lt;/script&gt;`,
			`<script src="/static/admin.js" defer></script>`,
		}},
		{"widget-demo.html", []string{`<script src="/widget.js" defer></script>`}},
	}
	for _, tt := range tests {
		t.Run(tt.page, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, tt.page, fixedData); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("%s does not contain %s", tt.page, w)
				}
			}
			if !strings.Contains(buf.String(), `<link rel="stylesheet" href="/static/app.css">`) {
				t.Errorf("%s does not load app.css", tt.page)
			}
		})
	}
}

func TestRenderUnknownPage(t *testing.T) {
	for _, name := range []string{"", "nope.html", "layout.html", "console", "../templates.go"} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, name, fixedData); err == nil {
				t.Fatalf("Render(%q) returned no error", name)
			}
			if buf.Len() != 0 {
				t.Fatalf("Render(%q) wrote %d bytes on error", name, buf.Len())
			}
		})
	}
}

func TestRenderEscapesData(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	d := Data{
		Title: evil, TenantID: evil, TenantKey: evil, TenantName: evil, PublicURL: evil,
		Domain: evil, EdgeURL: evil, Host: evil, Message: evil, Status: http.StatusNotFound,
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, name, d); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if strings.Contains(out, "<script>alert") || strings.Contains(out, `alert("x")`) {
				t.Errorf("%s contains unescaped data:\n%s", name, out)
			}
		})
	}
	var buf bytes.Buffer
	if err := Render(&buf, "console.html", Data{TenantName: "<script>"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "&lt;script&gt;") {
		t.Errorf("TenantName <script> is not rendered escaped:\n%s", buf.String())
	}
}

func TestTenantURL(t *testing.T) {
	tests := []struct {
		name string
		data Data
		key  string
		want string
	}{
		{"edge with port", Data{EdgeURL: "http://localhost:8080"}, "acme", "http://acme.localhost:8080"},
		{"edge https", Data{EdgeURL: "https://chat.example.com"}, "acme", "https://acme.chat.example.com"},
		{"domain only", Data{Domain: "example.test"}, "dev", "http://dev.example.test"},
		{"nothing", Data{}, "dev", "http://dev.localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.data.TenantURL(tt.key); got != tt.want {
				t.Errorf("TenantURL(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestStatic(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"widget.js", "attachShadow({ mode: 'open' })"},
		{"console.js", "/api/chat/queue"},
		{"admin.js", "/api/agents"},
		{"auth.js", "/api/auth/refresh"},
		{"app.css", ":root"},
	}
	static := Static()
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := fs.ReadFile(static, tt.file)
			if err != nil {
				t.Fatalf("Static() lacks %s: %v", tt.file, err)
			}
			if !bytes.Contains(b, []byte(tt.want)) {
				t.Errorf("%s does not contain %q", tt.file, tt.want)
			}
		})
	}
}

// TestStaticNoInnerHTML guards the rule that untrusted text never reaches innerHTML.
func TestStaticNoInnerHTML(t *testing.T) {
	err := fs.WalkDir(Static(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		b, err := fs.ReadFile(Static(), path)
		if err != nil {
			return err
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s uses %s", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name     string
		page     string
		status   int
		method   string
		wantCode int
		wantBody string
	}{
		{"not found page", "notfound.html", http.StatusNotFound, http.MethodGet, http.StatusNotFound, "Tenant not found"},
		{"paused page", "paused.html", http.StatusGone, http.MethodGet, http.StatusGone, "is suspended"},
		{"landing page", "landing.html", http.StatusOK, http.MethodGet, http.StatusOK, "Create a tenant"},
		{"head has no body", "landing.html", http.StatusOK, http.MethodHead, http.StatusOK, ""},
		{"unknown page", "nope.html", http.StatusOK, http.MethodGet, http.StatusInternalServerError, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(tt.page, tt.status, fixedData).ServeHTTP(rec, httptest.NewRequest(tt.method, "/", nil))
			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if tt.wantCode < 500 {
				if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			if tt.wantBody == "" && rec.Body.Len() != 0 {
				t.Errorf("body has %d bytes, want none", rec.Body.Len())
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body does not contain %q", tt.wantBody)
			}
		})
	}
}
