// Package templates holds Atende's web front end: the server-rendered HTML pages (html/template,
// embedded with embed.FS) and the static JavaScript and CSS they load (agent console, tenant-admin
// page, visitor widget). It is pure presentation: it knows nothing about tenants beyond the Data a
// caller hands it, and every value in Data is escaped by html/template.
//
// Pages (see Names): "landing.html" (platform landing page on the bare host), "notfound.html"
// (unknown tenant, served with 404), "paused.html" (suspended tenant, served with 410),
// "console.html" (agent console, /console), "admin.html" (tenant-admin page, /admin) and
// "widget-demo.html" (a fake tenant web site that embeds the widget, /widget-demo).
//
// Static files (see Static): "app.css", "auth.js", "chat-core.js", "console.js" and "admin.js",
// served under /static/, where the pages reference them as /static/<name>. "chat-core.js" is the
// logic the console and the widget share (socket, outbox of messages being sent, message view); the
// visitor widget is "chat-core.js" and "widget.js" joined into one script (see WidgetScript), which a
// server must serve at /widget.js, the address tenants embed.
package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

//go:embed html/*.html
var pageFiles embed.FS

//go:embed static
var staticFiles embed.FS

// layoutFile is the shared page skeleton; every page defines the "title", "body-class" and
// "content" blocks it fills (and optionally "scripts").
const layoutFile = "html/layout.html"

// Data is what a page is rendered with. Every field is optional; a page shows what it has.
type Data struct {
	// Title is the document title; empty means a per-page default.
	Title string
	// TenantID is the tenant's immutable id, TenantKey its subdomain slug and TenantName its
	// display name (e.g. "Acme").
	TenantID, TenantKey, TenantName string
	// PublicURL is the tenant's base URL as browsers see it, e.g. "http://acme.localhost:8080".
	// The admin page uses it to print the widget embed snippet.
	PublicURL string
	// Domain is the platform's base domain, e.g. "localhost"; tenants live at <key>.<Domain>.
	Domain string
	// EdgeURL is the platform's base URL on the bare host, e.g. "http://localhost:8080". The
	// landing page derives tenant URLs from it (see TenantURL).
	EdgeURL string
	// Host is the host name the request asked for, e.g. "nope.localhost:8080"; the not-found and
	// paused pages show it.
	Host string
	// Status is the HTTP status the page is served with (shown on error pages), e.g. 404.
	Status int
	// Message is an optional extra sentence shown on the not-found and paused pages.
	Message string
}

// TenantURL returns the base URL of the tenant with the given key, derived from EdgeURL by
// prefixing its host with "<key>." (keeping scheme and port): with EdgeURL
// "http://localhost:8080", TenantURL("acme") is "http://acme.localhost:8080". When EdgeURL is
// empty or unparsable it falls back to "http://<key>.<Domain>" (Domain defaulting to
// "localhost").
func (d Data) TenantURL(key string) string {
	if u, err := url.Parse(d.EdgeURL); err == nil && u.Host != "" && u.Scheme != "" {
		return u.Scheme + "://" + key + "." + u.Host
	}
	domain := d.Domain
	if domain == "" {
		domain = "localhost"
	}
	return "http://" + key + "." + domain
}

// StatusText returns the status code and its standard reason phrase, e.g. "404 Not Found", or
// an empty string when Status is zero.
func (d Data) StatusText() string {
	if d.Status == 0 {
		return ""
	}
	return strconv.Itoa(d.Status) + " " + http.StatusText(d.Status)
}

// pages maps a page name (e.g. "console.html") to its template, parsed together with the shared
// layout. It is built once at package initialisation from the embedded files; a template error is
// a programming error and panics at start (and fails the package tests).
var pages = mustParsePages()

func mustParsePages() map[string]*template.Template {
	entries, err := fs.Glob(pageFiles, "html/*.html")
	if err != nil {
		panic(err)
	}
	out := make(map[string]*template.Template)
	for _, path := range entries {
		if path == layoutFile {
			continue
		}
		name := strings.TrimPrefix(path, "html/")
		t := template.Must(template.New(name).ParseFS(pageFiles, layoutFile, path))
		out[name] = t
	}
	return out
}

// Names returns the names of all renderable pages in lexical order, e.g. "admin.html".
func Names() []string {
	names := make([]string, 0, len(pages))
	for n := range pages {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Render writes the page called name (one of Names, e.g. "console.html") rendered with data to
// w. It returns an error, and writes nothing, when name is not a known page; otherwise it returns
// the template execution or write error, if any. The page is rendered into memory first, so a
// failure never leaves half a page in w.
func Render(w io.Writer, name string, data Data) error {
	t, ok := pages[name]
	if !ok {
		return fmt.Errorf("templates: unknown page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("templates: render %s: %w", name, err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Static returns the embedded static files, rooted so that "app.css", "auth.js", "chat-core.js",
// "console.js", "admin.js" and "widget.js" are at the top level. Serve it at /static/ (the pages
// load /static/app.css, /static/auth.js, /static/chat-core.js, /static/console.js and
// /static/admin.js). Its "widget.js" is only the widget's half of /widget.js and does not run on its
// own: serve WidgetScript at /widget.js. The JavaScript files must be served with Content-Type
// "text/javascript; charset=utf-8" (http.FileServerFS does so by extension).
func Static() fs.FS {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // "static" is a fixed, embedded directory; this cannot fail.
	}
	return sub
}

// widgetScript is what WidgetScript returns, joined once at package initialisation.
var widgetScript = mustJoinWidgetScript()

// widgetScriptHead and widgetScriptTail wrap the joined widget script: one function expression,
// called at once, so that every top-level declaration of the joined files stays local to it.
const (
	widgetScriptHead = "/* Atende visitor widget: chat-core.js and widget.js, joined by the server. */\n(function () {\n"
	widgetScriptTail = "})();\n"
)

func mustJoinWidgetScript() []byte {
	var b bytes.Buffer
	b.WriteString(widgetScriptHead)
	for _, name := range []string{"static/chat-core.js", "static/widget.js"} {
		src, err := staticFiles.ReadFile(name)
		if err != nil {
			panic(err) // both files are embedded; this cannot fail.
		}
		b.Write(src)
		if !bytes.HasSuffix(src, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	b.WriteString(widgetScriptTail)
	return b.Bytes()
}

// WidgetScript returns the visitor widget's JavaScript, the single script tenants embed from
// /widget.js. It is "chat-core.js" followed by "widget.js", the two wrapped in one function
// expression that is called at once. The chat core's only declaration, AtendeCore, is therefore a
// local of that function, and widget.js receives it as an argument: on the host page the widget
// defines no global but window.AtendeWidget. The script is joined once, at package initialisation,
// from the embedded files, and every call returns the same slice, which callers must not modify.
// Serve it with Content-Type "text/javascript; charset=utf-8".
func WidgetScript() []byte {
	return widgetScript
}

// Handler returns a net/http handler that answers every request with the page called name
// rendered with data, the given HTTP status (e.g. http.StatusNotFound) and the headers
// "Content-Type: text/html; charset=utf-8", "Cache-Control: no-store" and
// "X-Content-Type-Options: nosniff". If the page cannot be rendered (an unknown name) it answers
// 500 with a plain-text error. For HEAD requests only the headers are written.
func Handler(name string, status int, data Data) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := Render(&buf, name, data); err != nil {
			http.Error(w, "internal error: page unavailable", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(buf.Bytes())
		}
	})
}

// PlatformHandler answers every path of a host that has no cell behind it — the bare domain, an
// unknown tenant, a suspended tenant:
//   - GET or HEAD /static/<file> serves the embedded static files, so the page is styled;
//   - paths under /api/ get the JSON error body of API.md ({"error":{"code","message"}}) with
//     status, because API clients never parse HTML;
//   - everything else gets the page called name with status and Data.Host set to the request's
//     host. For "landing.html" only "/" is the landing page; other paths get "notfound.html"
//     with 404.
func PlatformHandler(name string, status int, code, message string, data Data) http.Handler {
	static := http.StripPrefix("/static/", http.FileServerFS(Static()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/static/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			w.Header().Set("X-Content-Type-Options", "nosniff")
			static.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
		default:
			d := data
			d.Host = r.Host
			page, st := name, status
			if name == "landing.html" && r.URL.Path != "/" {
				page, st = "notfound.html", http.StatusNotFound
			}
			Handler(page, st, d).ServeHTTP(w, r)
		}
	})
}
