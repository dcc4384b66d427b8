package templates

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
			`data-testid="presence"`, `data-testid="note-mode"`, `data-testid="transfer"`, `data-testid="transfer-target"`,
			`data-testid="transfer-note"`, `data-testid="labels"`, `data-testid="label-input"`, `data-testid="canned-suggestions"`,
			`data-testid="read-receipt"`,
			`<script src="/static/auth.js" defer></script>` + "\n" + `<script src="/static/chat-core.js" defer></script>` +
				"\n" + `<script src="/static/console.js" defer></script>`,
		}},
		{"admin.html", []string{
			`data-testid="login-email"`, `data-testid="login-password"`, `data-testid="login-submit"`,
			`data-testid="agents"`, `data-testid="agent-email"`, `data-testid="agent-name"`,
			`data-testid="agent-add"`, `data-testid="agent-password-shown"`,
			`data-testid="departments"`, `data-testid="department-add"`, `data-testid="settings-form"`, `data-testid="settings-save"`,
			`data-testid="canned"`, `data-testid="canned-add"`, `data-testid="offline-messages"`, `data-testid="report"`,
			`data-testid="webhook-deliveries"`,
			`&lt;script src="http://acme.localhost:8080/widget.js" defer&gt;&lt;/script&gt;`,
			`<script src="/static/auth.js" defer></script>` + "\n" + `<script src="/static/chat-core.js" defer></script>` +
				"\n" + `<script src="/static/admin.js" defer></script>`,
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
		{"widget.js", "/api/availability"},
		{"widget.js", "/api/offline-messages"},
		{"widget.js", "/queue-position"},
		{"widget.js", "/csat"},
		{"widget.js", "/transcript"},
		{"chat-core.js", "/api/ws-ticket"},
		{"chat-core.js", "frame.private = true"},
		{"console.js", "/api/chat/queue"},
		{"console.js", "'/api/canned'"},
		{"console.js", "/transfer"},
		{"console.js", "/labels"},
		{"console.js", "/notes?since="},
		{"console.js", "'chat.left'"},
		{"console.js", "type: 'presence'"},
		{"admin.js", "/api/agents"},
		{"admin.js", "'/api/settings'"},
		{"admin.js", "/api/reports/summary?from="},
		{"admin.js", "/api/webhooks/deliveries"},
		{"admin.js", "/api/offline-messages"},
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

// TestWidgetScript checks the joined /widget.js: the chat core and the widget, in that order, inside
// one function, so that the core's declaration stays local and only AtendeWidget reaches the page.
func TestWidgetScript(t *testing.T) {
	out := WidgetScript()
	core, err := fs.ReadFile(Static(), "chat-core.js")
	if err != nil {
		t.Fatal(err)
	}
	widget, err := fs.ReadFile(Static(), "widget.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte(widgetScriptHead)) || !bytes.HasSuffix(out, []byte(widgetScriptTail)) {
		t.Fatalf("WidgetScript is not wrapped in one function:\n%.200s\n...\n%s", out, out[max(0, len(out)-200):])
	}
	ci, wi := bytes.Index(out, core), bytes.Index(out, widget)
	if ci != len(widgetScriptHead) || wi < ci+len(core) {
		t.Errorf("WidgetScript does not hold chat-core.js (at %d) followed by widget.js (at %d)", ci, wi)
	}
	if len(out) != len(widgetScriptHead)+len(core)+len(widget)+len(widgetScriptTail) {
		t.Errorf("WidgetScript has %d bytes, want the two files and the wrapper only", len(out))
	}
	// The core declares AtendeCore once, at its own top level; the widget takes it as an argument
	// and neither file publishes it on window.
	if n := bytes.Count(core, []byte("var AtendeCore =")); n != 1 || !bytes.HasPrefix(core[bytes.Index(core, []byte("var AtendeCore ="))-1:], []byte("\nvar")) {
		t.Errorf("chat-core.js declares AtendeCore %d times, want once at its top level", n)
	}
	if !bytes.Contains(widget, []byte("(function (Core) {")) || !bytes.HasSuffix(bytes.TrimSpace(widget), []byte("})(AtendeCore);")) {
		t.Error("widget.js is not a function of the chat core")
	}
	for _, leak := range []string{"window.AtendeCore =", "globalThis.AtendeCore", "window['AtendeCore']"} {
		if bytes.Contains(out, []byte(leak)) {
			t.Errorf("WidgetScript publishes the core: %s", leak)
		}
	}
	if &WidgetScript()[0] != &out[0] {
		t.Error("WidgetScript is joined again on every call")
	}
}

// TestWidgetScriptRuns parses every script with node and runs the joined widget, and chat-core.js
// alone, against a stub page: the widget may add only AtendeWidget to the page's globals, the
// console's copy of the core only AtendeCore. It is skipped when node is not installed.
func TestWidgetScriptRuns(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	scripts := []string{write("widget.js", WidgetScript())}
	entries, err := fs.ReadDir(Static(), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".js") {
			b, err := fs.ReadFile(Static(), e.Name())
			if err != nil {
				t.Fatal(err)
			}
			scripts = append(scripts, write("static-"+e.Name(), b))
		}
	}
	for _, p := range scripts {
		if out, err := exec.Command(nodeBin, "--check", p).CombinedOutput(); err != nil {
			t.Errorf("node --check %s: %v\n%s", filepath.Base(p), err, out)
		}
	}
	// The stub page is a vm context whose top-level declarations show up as its own properties.
	const probe = `
const vm = require('vm'), fs = require('fs');
const [file, runs] = [process.argv[1], Number(process.argv[2])];
const listeners = [];
const page = {
  document: {
    currentScript: { src: 'https://acme.example.com/widget.js', getAttribute: () => null },
    body: null,
    addEventListener: (type) => listeners.push(type),
    getElementsByTagName: () => []
  },
  location: { href: 'https://shop.example.org/page', origin: 'https://shop.example.org' },
  URL: URL
};
page.window = page;
const before = new Set(Object.getOwnPropertyNames(page));
vm.createContext(page);
for (let i = 0; i < runs; i++) { vm.runInContext(fs.readFileSync(file, 'utf8'), page, { filename: file }); }
const core = page.AtendeCore;
console.log(JSON.stringify({
  added: Object.getOwnPropertyNames(page).filter((k) => !before.has(k)).sort(),
  apiBase: page.AtendeWidget ? page.AtendeWidget.apiBase : null,
  listeners: listeners,
  coreApi: core ? Object.keys(core).filter((k) => typeof core[k] === 'function').length : 0
}));
`
	run := func(file string, runs int) (r struct {
		Added     []string
		APIBase   string
		Listeners []string
		CoreAPI   int
	}) {
		t.Helper()
		out, err := exec.Command(nodeBin, "-e", probe, file, strconv.Itoa(runs)).CombinedOutput()
		if err != nil {
			t.Fatalf("running %s in node: %v\n%s", filepath.Base(file), err, out)
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("probe output %q: %v", out, err)
		}
		return r
	}

	w := run(scripts[0], 2) // loaded twice: the second copy must step aside quietly
	if strings.Join(w.Added, ",") != "AtendeWidget" {
		t.Errorf("the widget adds the globals %v, want only AtendeWidget", w.Added)
	}
	if w.APIBase != "https://acme.example.com" {
		t.Errorf("AtendeWidget.apiBase = %q, want the script's origin https://acme.example.com", w.APIBase)
	}
	if strings.Join(w.Listeners, ",") != "DOMContentLoaded" {
		t.Errorf("with no body yet the widget listens for %v, want DOMContentLoaded once", w.Listeners)
	}

	c := run(filepath.Join(dir, "static-chat-core.js"), 1)
	if strings.Join(c.Added, ",") != "AtendeCore" || c.CoreAPI < 10 {
		t.Errorf("chat-core.js adds the globals %v with %d functions, want AtendeCore with its API", c.Added, c.CoreAPI)
	}
}

// TestPlatformHandler: styled pages (static files served), JSON under /api/, landing only at "/".
func TestPlatformHandler(t *testing.T) {
	nf := PlatformHandler("notfound.html", http.StatusNotFound, "not_found", "tenant not found", Data{Domain: "localhost"})
	landing := PlatformHandler("landing.html", http.StatusOK, "not_found", "no tenant on this host", Data{Domain: "localhost"})
	cases := []struct {
		h      http.Handler
		path   string
		status int
		ctype  string
		has    string
	}{
		{nf, "/", 404, "text/html", "not found"},
		{nf, "/static/app.css", 200, "text/css", ""},
		{nf, "/api/chat/queue", 404, "application/json", `"code":"not_found"`},
		{landing, "/", 200, "text/html", "Atende"},
		{landing, "/static/app.css", 200, "text/css", ""},
		{landing, "/does/not/exist", 404, "text/html", ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		body := rec.Body.String()
		if rec.Code != c.status || !strings.HasPrefix(rec.Header().Get("Content-Type"), c.ctype) || !strings.Contains(strings.ToLower(body), strings.ToLower(c.has)) {
			t.Errorf("%s: %d %q (has %q: %v)", c.path, rec.Code, rec.Header().Get("Content-Type"), c.has, strings.Contains(body, c.has))
		}
	}
}
